"""The accuracy suite: train, meta-test and record each experiment of benchmarks/suites/accuracy.yaml.

    python benchmarks/accuracy.py --list                       # experiments, steps, expected time, status
    python benchmarks/accuracy.py [--only NAME,NAME,...] [--force]
    python benchmarks/accuracy.py --speed [--only ...]         # measure steps/s (sets the step budgets)

Names are `sinusoid/maml/5shot` and `omniglot/<algorithm>/<5w1s|5w5s|20w1s>`; --only takes
names or shell patterns (`omniglot/protonet/*`). Each experiment runs two `distmeta` commands in
this process, the same code as on the command line:

    distmeta train <config> --in-process --no-eval --run-dir runs/accuracy/<name> --set ...
    distmeta eval runs/accuracy/<name> --tasks 600 --inner-steps K [--set task.ways=...] --json ...

(`--in-process`: one process, no Ray; 1 Ray worker gives the same parameters), and writes
benchmarks/results/accuracy/<name>.json: the commands, the resolved config, steps, training and
evaluation wall times, the test mean and 95% interval, the machine, its load average at start
and end, the date, and the paper's figure. The sinusoid experiment also writes the three
`distmeta eval --json` files benchmarks/results/sinusoid_maml_5shot_{1,5,10}step.json.

An experiment whose result file exists is skipped unless --force; one whose run folder holds
checkpoints resumes from them (delete runs/accuracy/<name> to start over). Omniglot experiments
are skipped, with the reason, when ../shared/data is missing. MAML 5-way 1-shot reuses the full
run of benchmarks/results/omniglot_maml_5w1s.json unless --force.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml

from distmeta.tasks.streams import EARLIER_TASK_STREAM, TASK_STREAM

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "suites" / "accuracy.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "accuracy"
SPEED = RESULTS / "speed.json"
RUNS = "runs/accuracy"
PAPER_NOTE = (
    "the papers meta-train on 1,200 characters of 30 alphabets (x4 rotations); "
    "here on 5 alphabets of ../shared/data, with a step budget a few percent of theirs"
)


@dataclass
class Experiment:
    name: str
    """sinusoid/maml/5shot or omniglot/<algorithm>/<setting>."""
    config: str
    """The YAML config the commands start from, relative to the repository root."""
    train_set: list[str]
    """--set overrides of the training command (train.steps included)."""
    eval_set: list[str]
    """--set overrides of the evaluation command (the setting's ways and shots where training differs)."""
    inner_steps: list[int]
    """Evaluations, one per number of inner steps; the first is the headline figure."""
    steps: int
    run_dir: str
    tasks: int = 600
    paper: object = None
    paper_source: str | None = None
    budget_minutes: float | None = None
    data: str | None = None
    """A folder that must exist (else the experiment is skipped), relative to the repository root."""
    eval_json: str | None = None
    """A path template ({steps}) for each evaluation's `distmeta eval --json` file."""
    reuse: dict | None = None
    speed_set: list[str] = field(default_factory=list)
    """The training overrides without the step count and intervals (what --speed builds)."""
    trained_by: str | None = None
    """An earlier experiment of the suite with exactly the same training (its run is evaluated again)."""

    @property
    def file_name(self) -> str:
        return self.name.replace("/", "_") + ".json"

    @property
    def result_path(self) -> Path:
        return RESULTS / self.file_name

    def train_argv(self) -> list[str]:
        argv = ["train", self.config, "--in-process", "--no-eval"]
        if self.run_dir != _config_run_dir(self.config):
            argv += ["--run-dir", self.run_dir]
        for override in self.train_set:
            argv += ["--set", override]
        return argv

    def eval_argv(self, inner_steps: int, json_path: str | None = None) -> list[str]:
        argv = ["eval", self.run_dir, "--tasks", str(self.tasks), "--inner-steps", str(inner_steps)]
        for override in self.eval_set:
            argv += ["--set", override]
        if json_path:
            argv += ["--json", json_path]
        return argv

    def eval_json_path(self, inner_steps: int) -> str | None:
        return self.eval_json.format(steps=inner_steps) if self.eval_json else None

    def commands(self) -> list[str]:
        return [command_line(self.train_argv())] + [
            command_line(self.eval_argv(k, self.eval_json_path(k))) for k in self.inner_steps
        ]

    def skip_reason(self) -> str | None:
        if self.data and not (ROOT / self.data).is_dir():
            return f"{self.data} is missing (the real Omniglot subsets; see ../shared/data/README.md)"
        return None


def command_line(argv: list[str]) -> str:
    return shlex.join(["distmeta", *argv])


def _config_run_dir(config: str) -> str:
    raw = yaml.safe_load((ROOT / config).read_text()) or {}
    return (raw.get("train") or {}).get("run_dir", "")


# ---------------------------------------------------------------- the suite file


def load_suite(path: Path = SUITE) -> list[Experiment]:
    """Every experiment of the suite file, in its order."""
    suite = yaml.safe_load(path.read_text())
    experiments = []
    for key, spec in (suite.get("sinusoid") or {}).items():
        experiments.append(
            Experiment(
                name=f"sinusoid/{key}",
                config=spec["config"],
                train_set=[],
                eval_set=[],
                inner_steps=list(spec["inner_steps"]),
                steps=_config_steps(spec["config"]),
                run_dir=_config_run_dir(spec["config"]),
                paper=spec.get("paper"),
                paper_source=spec.get("paper_source"),
                eval_json=spec.get("eval_json"),
            )
        )
    omniglot = suite.get("omniglot")
    if omniglot:
        experiments += _omniglot_experiments(omniglot, path)
    return experiments


def _omniglot_experiments(spec: dict, path: Path) -> list[Experiment]:
    from distmeta.config import load_config

    experiments = []
    for algorithm, algo in spec["algorithms"].items():
        by_setting = algo.get("set_by_setting") or {}
        unknown = set(by_setting) - set(spec["settings"])
        if unknown:
            raise SystemExit(
                f"{path}: omniglot.algorithms.{algorithm}.set_by_setting names settings "
                f"{sorted(unknown)} that omniglot.settings lacks ({', '.join(spec['settings'])})"
            )
        for setting, setting_set in spec["settings"].items():
            name = f"omniglot/{algorithm}/{setting}"
            reuse = (algo.get("reuse") or {}).get(setting)
            config = reuse["config"] if reuse else spec["base"]
            # the setting, then the algorithm's overrides, then the algorithm's for this setting
            speed_set = [] if reuse else _merge(setting_set, algo.get("set", []), by_setting.get(setting, []))
            steps = int(algo["steps"][setting])
            trained = load_config(ROOT / config, speed_set)
            train_set = [] if reuse else [*speed_set, *_step_overrides(steps)]
            wanted = load_config(ROOT / spec["base"], list(setting_set)).task
            eval_set = [
                f"task.{key}={getattr(wanted, key)}"
                for key in ("ways", "shots", "query_shots")
                if getattr(wanted, key) != getattr(trained.task, key)
            ]
            experiments.append(
                Experiment(
                    name=name,
                    config=config,
                    train_set=train_set,
                    eval_set=eval_set,
                    inner_steps=[trained.algorithm.test_inner_steps],
                    steps=steps,
                    run_dir=trained.train.run_dir if reuse else f"{RUNS}/{name.replace('/', '-')}",
                    tasks=int(spec.get("tasks", 600)),
                    paper=(algo.get("paper") or {}).get(setting),
                    paper_source=algo.get("paper_source"),
                    budget_minutes=algo.get("budget_minutes"),
                    data=spec.get("data"),
                    reuse=reuse,
                    speed_set=speed_set,
                )
            )
    trainings: dict[tuple, Experiment] = {}
    for experiment in experiments:  # the same training twice (ProtoNets' 60-way 1-shot): one run
        key = (experiment.config, tuple(experiment.train_set))
        first = trainings.setdefault(key, experiment)
        if first is not experiment and not experiment.reuse:
            experiment.run_dir, experiment.trained_by = first.run_dir, first.name
    return experiments


def _merge(*override_lists: list[str]) -> list[str]:
    """The overrides in order, a later one replacing an earlier one of the same field."""
    merged: dict[str, str] = {}
    for overrides in override_lists:
        for override in overrides:
            key = override.partition("=")[0].strip()
            merged.pop(key, None)
            merged[key] = override
    return list(merged.values())


def _step_overrides(steps: int) -> list[str]:
    """train.steps, with about 5 validations and checkpoints (a multiple of 50 steps apart)."""
    every = max(50, round(steps / 5 / 50) * 50)
    return [f"train.steps={steps}", f"train.val_every={every}", f"train.checkpoint_every={every}"]


def _config_steps(config: str) -> int:
    raw = yaml.safe_load((ROOT / config).read_text()) or {}
    return int((raw.get("train") or {}).get("steps", 10000))


def select(experiments: list[Experiment], only: str | None) -> list[Experiment]:
    if not only:
        return experiments
    patterns = [p.strip() for p in only.split(",") if p.strip()]
    chosen = [e for e in experiments if any(fnmatch.fnmatchcase(e.name, p) for p in patterns)]
    unknown = [p for p in patterns if not any(fnmatch.fnmatchcase(e.name, p) for e in experiments)]
    if unknown:
        raise SystemExit(f"accuracy.py: no experiment matches {', '.join(unknown)} (see --list)")
    return chosen


# ---------------------------------------------------------------- machine


def machine() -> dict:
    import torch

    from distmeta.benchmarking.machine import cpu_model

    return {
        "platform": platform.platform(),
        "processor": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# ---------------------------------------------------------------- running


def run_experiment(experiment: Experiment) -> dict:
    """Train, evaluate and write the result file; returns what it wrote."""
    from distmeta.cli import main as distmeta

    started_at, load_start = datetime.now().isoformat(timespec="seconds"), load_average()
    print(f"== {experiment.name}: {experiment.steps} steps; load average {load_start}", flush=True)
    for command in experiment.commands():
        print(f"   {command}", flush=True)
    summary_path = ROOT / experiment.run_dir / "summary.json"
    done = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    if experiment.trained_by and done.get("steps") == done.get("steps_this_session") == experiment.steps:
        print(f"   trained by {experiment.trained_by} (the same config): {experiment.run_dir}", flush=True)
        summary, train_wall = done, done["wall_time_s"]
    else:
        t0 = time.perf_counter()
        if distmeta(experiment.train_argv()) != 0:
            raise SystemExit(f"accuracy.py: training {experiment.name} failed")
        train_wall = time.perf_counter() - t0
        summary = json.loads(summary_path.read_text())
    evaluations = []
    for inner_steps in experiment.inner_steps:
        json_path = experiment.eval_json_path(inner_steps)
        with tempfile.TemporaryDirectory() as scratch:
            target = json_path or str(Path(scratch) / "eval.json")
            t0 = time.perf_counter()
            if distmeta(experiment.eval_argv(inner_steps, target)) != 0:
                raise SystemExit(f"accuracy.py: evaluating {experiment.name} failed")
            wall = time.perf_counter() - t0
            result = json.loads((ROOT / target).read_text())
        evaluations.append({**result, "eval_wall_time_s": wall})
    record = _record(experiment, summary, train_wall, evaluations, started_at, load_start)
    write_json(experiment.result_path, record)
    print(f"== {experiment.name}: {describe(record)}; wrote {experiment.result_path.relative_to(ROOT)}", flush=True)
    return record


def _record(
    experiment: Experiment, summary: dict, train_wall: float, evaluations: list[dict], started_at: str, load_start
) -> dict:
    from distmeta.config import load_config, to_dict
    from distmeta.training.checkpoint import load_checkpoint

    config = to_dict(load_config(ROOT / experiment.config, [*experiment.train_set]))
    head = evaluations[0]
    checkpoint = load_checkpoint(ROOT / experiment.run_dir)
    return {
        "experiment": experiment.name,
        "commands": experiment.commands(),
        "suite": str(SUITE.relative_to(ROOT)),
        "training": "in this process (distmeta train --in-process); 1 Ray worker gives the same parameters",
        "config": config,
        "steps": checkpoint["step"],
        "steps_this_session": summary.get("steps_this_session"),
        "trained_by": experiment.trained_by,
        "train_wall_time_s": train_wall,
        "train_loop_wall_time_s": summary.get("wall_time_s"),
        "tasks_per_s": summary.get("tasks_per_s"),
        "final_train": summary.get("final_train"),
        "eval_wall_time_s": head["eval_wall_time_s"],
        "metric": head["metric"],
        "test_mean": head["mean"],
        "ci95": head["ci95"],
        "tasks": head["tasks"],
        "inner_steps": head["inner_steps"],
        "evaluations": evaluations,
        "paper": experiment.paper,
        "paper_source": experiment.paper_source,
        "paper_note": PAPER_NOTE if experiment.name.startswith("omniglot/") else None,
        "budget_minutes": experiment.budget_minutes,
        "task_stream": TASK_STREAM,
        "machine": machine(),
        "date": started_at,
        "finished": datetime.now().isoformat(timespec="seconds"),
        "load_average": {"start": load_start, "end": load_average()},
    }


def reuse_experiment(experiment: Experiment) -> dict:
    """The result file of an experiment that reuses an earlier full run (no training)."""
    from distmeta.config import load_config, to_dict

    source = ROOT / experiment.reuse["result"]
    earlier = json.loads(source.read_text())
    tests = sorted(
        (v for k, v in earlier.items() if k.startswith("test_") and isinstance(v, dict)),
        key=lambda r: r["inner_steps"] != experiment.inner_steps[0],
    )
    head = tests[0]
    config = load_config(ROOT / experiment.config)
    commands = [command_line(["train", experiment.config, "--in-process", "--no-eval"])] + [
        command_line(["eval", config.train.run_dir, "--tasks", str(t["tasks"]), "--inner-steps", str(t["inner_steps"])])
        for t in tests
    ]
    record = {
        "experiment": experiment.name,
        "reused_from": experiment.reuse["result"],
        "commands": commands,
        "suite": str(SUITE.relative_to(ROOT)),
        "training": "in this process (distmeta train --in-process), as " + experiment.reuse["result"] + " says",
        "config": to_dict(config),
        "steps": earlier["steps"],
        "train_wall_time_s": earlier["wall_time_s"],
        "tasks_per_s": earlier.get("tasks_per_s"),
        "final_train": earlier.get("final_train"),
        "eval_wall_time_s": None,
        "metric": head["metric"],
        "test_mean": head["mean"],
        "ci95": head["ci95"],
        "tasks": head["tasks"],
        "inner_steps": head["inner_steps"],
        "evaluations": [{**t, "eval_wall_time_s": None} for t in tests],
        "paper": experiment.paper,
        "paper_source": experiment.paper_source,
        "paper_note": PAPER_NOTE,
        "budget_minutes": None,
        "task_stream": earlier.get("task_stream", EARLIER_TASK_STREAM),
        "machine": earlier.get("machine"),
        "date": _git_date(source),
        "load_average": None,
        "note": "not re-run by the suite: the full run recorded in "
        + experiment.reuse["result"]
        + " (its evaluation wall time was not recorded); --force trains it again with "
        + experiment.config,
    }
    write_json(experiment.result_path, record)
    print(f"== {experiment.name}: reused {experiment.reuse['result']}: {describe(record)}", flush=True)
    return record


def _git_date(path: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%cI", "--", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def describe(record: dict) -> str:
    if record["metric"] == "accuracy":
        figure = f"{100 * record['test_mean']:.2f}% +- {100 * record['ci95']:.2f}%"
    else:
        figure = f"mse {record['test_mean']:.3f} +- {record['ci95']:.3f}"
    return f"{figure} ({record['tasks']} tasks, {record['inner_steps']} inner steps)"


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


# ---------------------------------------------------------------- speed (what the step budgets come from)


def measure_speed(experiment: Experiment, steps: int, warmup: int, eval_tasks: int) -> dict:
    """Seconds per meta-step (after warm-up) and per evaluated task, with fresh parameters."""
    import torch

    from distmeta.config import load_config
    from distmeta.evaluation import evaluate
    from distmeta.experiment import build_experiment
    from distmeta.training.trainer import initial_state, meta_step

    config = load_config(ROOT / experiment.config, experiment.speed_set)
    built = build_experiment(config)
    state = initial_state(built)
    for _ in range(warmup):
        meta_step(built, state)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        meta_step(built, state)
        times.append(time.perf_counter() - t0)
    eval_config = load_config(ROOT / experiment.config, [*experiment.speed_set, *experiment.eval_set])
    evaluator = build_experiment(eval_config, check_data=False)
    t0 = time.perf_counter()
    with torch.no_grad():
        evaluate(evaluator, state.meta_params, "test", eval_tasks, experiment.inner_steps[0])
    eval_per_task = (time.perf_counter() - t0) / eval_tasks
    s_per_step = sorted(times)[len(times) // 2]
    return {
        "s_per_step": s_per_step,
        "steps_per_s": 1 / s_per_step,
        "mean_s_per_step": sum(times) / len(times),
        "timed_steps": steps,
        "warmup_steps": warmup,
        "eval_s_per_task": eval_per_task,
        "eval_inner_steps": experiment.inner_steps[0],
        "load_average": load_average(),
        "date": datetime.now().isoformat(timespec="seconds"),
    }


def run_speed(experiments: list[Experiment], steps: int, warmup: int, eval_tasks: int) -> None:
    speed = json.loads(SPEED.read_text()) if SPEED.exists() else {}
    speed.setdefault("experiments", {})
    speed["machine"] = machine()
    speed["command"] = "python benchmarks/accuracy.py --speed"
    for experiment in experiments:
        if experiment.reuse or experiment.name.startswith("sinusoid/") or experiment.skip_reason():
            continue
        result = measure_speed(experiment, steps, warmup, eval_tasks)
        speed["experiments"][experiment.name] = result
        budget = (experiment.budget_minutes or 0) * 60
        print(
            f"{experiment.name:28s} {result['s_per_step']:7.3f} s/step ({result['steps_per_s']:.2f} steps/s), "
            f"eval {result['eval_s_per_task'] * experiment.tasks:6.0f} s for {experiment.tasks} tasks; "
            f"{experiment.budget_minutes} min -> {budget / result['s_per_step']:.0f} steps "
            f"(load {result['load_average']})",
            flush=True,
        )
        write_json(SPEED, speed)


def expected_minutes(experiment: Experiment, speed: dict) -> tuple[float | None, float | None]:
    measured = speed.get("experiments", {}).get(experiment.name)
    if not measured:
        return None, None
    return (
        experiment.steps * measured["s_per_step"] / 60,
        experiment.tasks * measured["eval_s_per_task"] * len(experiment.inner_steps) / 60,
    )


def list_experiments(experiments: list[Experiment]) -> None:
    speed = json.loads(SPEED.read_text()) if SPEED.exists() else {}
    print(
        f"{'experiment':28s} {'steps':>6s} {'s/step':>7s} {'load':>5s} {'train':>8s} {'eval':>6s}  status"
        "   (s/step: --speed, measured at that load average; train, eval: expected time)"
    )
    for experiment in experiments:
        measured = speed.get("experiments", {}).get(experiment.name, {})
        train, evaluation = expected_minutes(experiment, speed)
        if experiment.trained_by:
            train = 0.0  # evaluates the run of `trained_by`
        status = experiment.skip_reason() and "skipped: " + experiment.skip_reason()
        if not status and experiment.result_path.exists():
            status = "done: " + describe(json.loads(experiment.result_path.read_text()))
        status = status or ("reuses " + experiment.reuse["result"] if experiment.reuse else "not run yet")
        if experiment.trained_by:
            status += f" (evaluates the training of {experiment.trained_by})"
        load = (measured.get("load_average") or [None])[0]
        print(
            f"{experiment.name:28s} {experiment.steps:6d} {_num(measured.get('s_per_step'), '.3f'):>7s} "
            f"{_num(load, '.1f'):>5s} "
            f"{_num(train, '.0f', ' min'):>8s} {_num(evaluation, '.0f', ' min'):>6s}  {status}"
        )


def _num(value, fmt: str, unit: str = "") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt) + unit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated names or patterns (default: all)")
    parser.add_argument("--list", action="store_true", help="list the experiments and stop")
    parser.add_argument(
        "--force", action="store_true", help="run experiments whose result exists, and those that reuse an earlier run"
    )
    parser.add_argument("--speed", action="store_true", help="measure s/step of the selected experiments")
    parser.add_argument("--speed-steps", type=int, default=10)
    parser.add_argument("--speed-warmup", type=int, default=2)
    parser.add_argument("--speed-eval-tasks", type=int, default=50)
    args = parser.parse_args(argv)
    os.chdir(ROOT)  # configs name their data and run folders relative to the repository root
    experiments = select(load_suite(), args.only)
    if args.list:
        list_experiments(experiments)
        return 0
    if args.speed:
        run_speed(experiments, args.speed_steps, args.speed_warmup, args.speed_eval_tasks)
        return 0
    for experiment in experiments:
        reason = experiment.skip_reason()
        if reason:
            print(f"== {experiment.name}: skipped: {reason}", flush=True)
        elif experiment.result_path.exists() and not args.force:
            print(
                f"== {experiment.name}: {experiment.result_path.relative_to(ROOT)} exists "
                f"({describe(json.loads(experiment.result_path.read_text()))}); --force runs it again",
                flush=True,
            )
        elif experiment.reuse and not args.force:
            reuse_experiment(experiment)
        else:
            run_experiment(experiment)
    return 0


if __name__ == "__main__":
    sys.exit(main())
