"""Multimodal 5-shot regression (the MMAML paper's section 5.1): MAML, Multi-MAML, MMAML, ALFA.

    python benchmarks/multimodal_regression.py [--steps 800] [--modes 2,3,5] [--out PATH]
    python benchmarks/multimodal_regression.py --steps 7000 --meta-batch-size paper --hidden 100,100,100 \
        --out benchmarks/results/multimodal_regression_7000.json     # the issue's budget: 1/10 of the paper's
    # the same with the authors' inner clip, as two runs side by side (2 and 3 modes; 5), then one record:
    python benchmarks/multimodal_regression.py --steps 7000 --meta-batch-size paper --hidden 100,100,100 \
        --inner-grad-clip 10 --modes 2,3 --out runs/clip10_2_3modes.json     # and, beside it, --modes 5
    python benchmarks/multimodal_regression.py --merge runs/clip10_2_3modes.json runs/clip10_5modes.json \
        --out benchmarks/results/multimodal_regression_7000_clip10.json
    # the closest to the paper so far (benchmarks/results/multimodal_regression_7000_cosine.json):
    python benchmarks/multimodal_regression.py --steps 7000 --meta-batch-size paper --hidden 100,100,100 \
        --inner-steps 5 --inner-lr 0.001 --inner-grad-clip 10 --mmaml-encoder lstm \
        --meta-lr 0.005 --meta-lr-schedule cosine --meta-grad-clip 2
    python benchmarks/multimodal_regression.py --methods mmaml ...   # some of the methods only
    python benchmarks/multimodal_regression.py --table         # the README table of the results JSON

For each number of modes (2: sinusoid, linear; 3: + quadratic; 5: + tanh, |x|), trains in
this process (no Ray; one Ray worker gives the same parameters) and meta-tests on the same
600 held-out tasks:
- MAML, MMAML and ALFA on the mixture, `--steps` meta-steps each;
- Multi-MAML: one MAML per mode, trained on its mode alone, and each test task adapted by the
  MAML of its mode (given the mode: an upper reference, as in the paper). The M models share the
  budget of one method: `--steps` / M steps each, so that every method sees as many tasks.
Writes one JSON (default benchmarks/results/multimodal_regression.json) with the command, the
configs, wall times, the test MSE of each (mean and 95% interval over 600 tasks, and over 6,000:
the 600 and 5,400 more; median, worst task and mean per mode), the spread
of MMAML's and ALFA's task-conditioned outputs on those tasks, and the paper's figures.

The paper's numbers (Vuorio et al., 2019, arXiv:1910.13616, Table 1, MSE of 5-shot regression
after adaptation) come from 70,000 meta-batches of 75 tasks on an MLP 100-100-100; the
defaults here are a CPU budget (see `PAPER` and the JSON's `budget_note`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from distmeta.algorithms.mmaml import REGRESSION_ENCODERS  # noqa: E402
from distmeta.benchmarking.machine import cpu_model  # noqa: E402
from distmeta.conditioning import conditioning_spread, task_conditioning_outputs  # noqa: E402
from distmeta.config import META_LR_SCHEDULES, load_config  # noqa: E402
from distmeta.evaluation import mean_and_ci95  # noqa: E402
from distmeta.execution import batch_evaluation  # noqa: E402
from distmeta.experiment import build_experiment  # noqa: E402
from distmeta.tasks import sample_tasks  # noqa: E402
from distmeta.tasks.multimodal import MODE_SETS  # noqa: E402
from distmeta.tasks.streams import TASK_STREAM  # noqa: E402
from distmeta.training.trainer import train  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "multimodal_regression.json"
RUNS = Path(os.environ.get("DISTMETA_BENCH_RUNS", ROOT / "runs" / "multimodal_regression"))
TEST_TASKS = 600
LARGE_TEST_TASKS = 6000
"""Each method is also tested on 6,000 tasks, the 600 and 5,400 more: a mean over 600 tasks can
be carried by one task (a steep line whose support points all lie near 0, extrapolated to
+-5: one such task, MSE 57, moved a 2-mode mean from 0.37 to 0.43), so the larger sample says
where the mean lies to a tenth of the interval's width."""
PAPER = {
    "source": "Vuorio et al. 2019, Multimodal Model-Agnostic Meta-Learning via Task-Aware Modulation "
    "(arXiv:1910.13616), Table 1: MSE of multimodal 5-shot regression, after adaptation "
    "(values as recalled from the paper; check them against its Table 1 before quoting)",
    "maml": {"2": 1.085, "3": 1.231, "5": 1.668},
    "multi-maml": {"2": 0.433, "3": 0.713, "5": 1.082},
    "mmaml": {"2": 0.336, "3": 0.444, "5": 0.868},
    "setting": "70,000 meta-batches of 50, 75 and 125 tasks for 2, 3 and 5 modes (the authors' README "
    "commands), MLP 100-100-100, 5 inner steps of lr 0.001, noise 0.3",
}
# The meta-batch sizes of the authors' commands (vuoristo/MMAML-Regression README: --meta-batch-size
# 50, 75, 125 for the 2-, 3- and 5-mode mixtures): `--meta-batch-size paper` takes them.
PAPER_META_BATCH_SIZES = {2: 50, 3: 75, 5: 125}
PAPER_META_BATCHES = 70_000
METHODS = ("maml", "multi-maml", "mmaml", "alfa")
# what may differ between the runs that `--merge` puts into one record
MERGE_MAY_DIFFER = {"modes", "methods", "out", "merge", "table"}


def meta_batch_size(args, count: int) -> int:
    """The meta-batch size for a mixture of `count` modes: --meta-batch-size, or the paper's."""
    if args.meta_batch_size == "paper":
        return PAPER_META_BATCH_SIZES[count]
    return int(args.meta_batch_size)


def base_overrides(args, modes: tuple[str, ...], count: int) -> list[str]:
    """The settings every method shares on a `count`-mode mixture: the task family, the MLP, the
    budget (Multi-MAML's one-mode models take the mixture's meta-batch size)."""
    return [
        "task.name=multimodal",
        f"task.modes=[{', '.join(modes)}]",
        "task.shots=5",
        "task.query_shots=10",
        f"model.hidden_sizes=[{', '.join(str(w) for w in args.hidden)}]",
        f"algorithm.inner_lr={args.inner_lr}",
        f"algorithm.inner_steps={args.inner_steps}",
        f"algorithm.test_inner_steps={args.inner_steps}",
        *([f"algorithm.inner_grad_clip={args.inner_grad_clip}"] if args.inner_grad_clip else []),
        f"train.steps={args.steps}",
        f"train.meta_batch_size={meta_batch_size(args, count)}",
        f"train.meta_lr={args.meta_lr}",
        *([f"train.meta_lr_schedule={args.meta_lr_schedule}"] if args.meta_lr_schedule != "constant" else []),
        *([f"train.meta_grad_clip={args.meta_grad_clip}"] if args.meta_grad_clip else []),
        f"train.log_every={max(args.steps // 4, 1)}",
        "train.val_every=0",
        "train.val_tasks=100",
        f"train.checkpoint_every={args.steps}",
        f"eval.tasks={TEST_TASKS}",
        f"seed={args.seed}",
    ]


def train_one(args, modes: tuple[str, ...], count: int, algorithm: str, run_name: str, steps: int | None = None):
    """(config, meta-parameters, training seconds, overrides, tested again) of one in-process run on
    modes of a `count`-mode mixture (`steps`: --steps unless given; resumed if checkpointed: a run
    already trained to the end is only tested again, and its seconds are those its metrics recorded)."""
    overrides = base_overrides(args, modes, count) + [f"algorithm.name={algorithm}", f"train.run_dir={RUNS / run_name}"]
    if algorithm == "mmaml" and args.mmaml_encoder != "set":
        overrides.append(f"algorithm.mmaml.encoder={args.mmaml_encoder}")
    if steps is not None:
        overrides += [
            f"train.steps={steps}",
            f"train.checkpoint_every={steps}",
            f"train.log_every={max(steps // 4, 1)}",
        ]
    config = load_config(None, overrides)
    started = time.perf_counter()
    result = train(config, print_fn=lambda line: print(f"  [{run_name}] {line}", flush=True), final_eval=False)
    seconds = time.perf_counter() - started
    tested_again = result.summary["steps_this_session"] == 0
    if tested_again:
        seconds = recorded_training_seconds(RUNS / run_name)
    return config, result.meta_params, seconds, overrides, tested_again


def recorded_training_seconds(run_dir: Path) -> float:
    """The training loop's seconds of a finished run, from the last line of its metrics."""
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    return float(last["elapsed_s"])


def test_tasks(args, modes: tuple[str, ...]):
    """The 6,000 test tasks of the mixture (the same for every method), with their modes: the
    first 600 are the test tasks of the headline figures (a task is drawn from its index alone)."""
    config = load_config(None, base_overrides(args, modes, len(modes)))
    return sample_tasks(build_experiment(config).tasks("test"), config.seed, "test", 0, range(LARGE_TEST_TASKS))


def test_mse(config, meta_params, batch) -> torch.Tensor:
    """Each task's query MSE after adaptation with `config`'s method and test inner steps."""
    experiment = build_experiment(config, check_data=False)
    _, scores = batch_evaluation(
        experiment.algorithm, meta_params, batch, config.algorithm.test_inner_steps, experiment.strategy
    )
    return scores.detach()


def sample_summary(scores: torch.Tensor) -> dict:
    """Mean, 95% interval, median and largest value of the tasks' MSEs, and how many tasks."""
    mean, ci95 = mean_and_ci95(scores)
    return {
        "mse": mean,
        "ci95": ci95,
        "median": scores.median().item(),
        "max": scores.max().item(),
        "tasks": scores.numel(),
    }


def summary(scores: torch.Tensor, modes: torch.Tensor, names, seconds: float, overrides: list[str], **extra) -> dict:
    """Mean and 95% interval of the MSE of the first 600 tasks; and, because a few tasks can carry
    that mean, its median, its largest value, the mean of each mode's tasks (`modes`: each task's
    mode index into `names`) and the mean over all 6,000 tasks (`large_sample`)."""
    headline, headline_modes = scores[:TEST_TASKS], modes[:TEST_TASKS]
    return {
        **sample_summary(headline),
        "mse_by_mode": {name: headline[headline_modes == index].mean().item() for index, name in enumerate(names)},
        "large_sample": sample_summary(scores),
        "train_seconds": round(seconds, 1),
        "overrides": overrides,
        **extra,
    }


def run_modes(args, count: int) -> dict:
    modes = MODE_SETS[count]
    print(f"{count} modes: {', '.join(modes)}", flush=True)
    batch = test_tasks(args, modes)
    results: dict[str, dict] = {}
    for algorithm in [method for method in ("maml", "mmaml", "alfa") if method in args.methods]:
        config, params, seconds, overrides, tested_again = train_one(
            args, modes, count, algorithm, f"{count}modes-{algorithm}"
        )
        extra = {"tested_again": True} if tested_again else {}
        if algorithm != "maml":
            experiment = build_experiment(config, check_data=False)
            outputs = task_conditioning_outputs(experiment, params, "test", 200)
            per_mode = batch.modes[:200]
            extra["conditioning"] = conditioning_spread(outputs)
            # the spread of the per-mode means: how much the generated strategy tells modes apart
            means = torch.stack([outputs[per_mode == m].double().mean(0) for m in per_mode.unique()])
            extra["conditioning"]["between_mode_std"] = means.std(0).mean().item() if len(means) > 1 else 0.0
        scores = test_mse(config, params, batch)
        results[algorithm] = summary(scores, batch.modes, modes, seconds, overrides, **extra)
        print(
            f"  {algorithm}: test mse {results[algorithm]['mse']:.3f} +- {results[algorithm]['ci95']:.3f}", flush=True
        )
    results["mode_counts"] = torch.bincount(batch.modes[:TEST_TASKS], minlength=len(modes)).tolist()
    if "multi-maml" not in args.methods:
        return results
    scores = torch.empty(LARGE_TEST_TASKS)
    seconds, per_mode_overrides, tested_again = 0.0, {}, []
    tasks = batch.select(0, LARGE_TEST_TASKS)
    for index, mode in enumerate(modes):
        config, params, took, overrides, again = train_one(
            args, (mode,), count, "maml", f"{count}modes-multimaml-{mode}", steps=max(args.steps // len(modes), 1)
        )
        seconds += took
        tested_again.append(again)
        per_mode_overrides[mode] = overrides
        chosen = (batch.modes == index).nonzero().flatten()
        if len(chosen):
            subset = type(tasks)(*(t[chosen] for t in tasks.tensors()), seed=tasks.seed, modes=tasks.modes[chosen])
            scores[chosen] = test_mse(config, params, subset)
    results["multi-maml"] = summary(
        scores,
        batch.modes,
        modes,
        seconds,
        [],
        per_mode_overrides=per_mode_overrides,
        note="one MAML per mode, --steps / modes steps each; each test task adapted by its mode's MAML",
        **({"tested_again": True} if all(tested_again) else {}),
    )
    print(
        f"  multi-maml: test mse {results['multi-maml']['mse']:.3f} +- {results['multi-maml']['ci95']:.3f}", flush=True
    )
    return results


def markdown_table(record: dict) -> str:
    """The README's table of a results JSON: test MSE +- 95% interval per method and mode count,
    with the paper's figure beside ours; a row for each method the record holds."""
    counts = list(record["results"])
    paper = record["paper"]
    header = "| method | " + " | ".join(f"{c} modes (paper)" for c in counts) + " |"
    lines = [header, "|---" * (len(counts) + 1) + "|"]
    for method in METHODS:
        if not any(method in record["results"][count] for count in counts):
            continue  # a run of some methods only (--methods): no row for the others
        cells = []
        for count in counts:
            result = record["results"][count].get(method)
            theirs = paper.get(method, {}).get(count)
            ours = f"{result['mse']:.3f} +- {result['ci95']:.3f}" if result else "not run"
            cells.append(f"{ours} ({theirs if theirs is not None else '-'})")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    spreads = []
    for method in ("mmaml", "alfa"):
        for count in counts:
            if method not in record["results"][count]:
                continue
            spread = record["results"][count][method]["conditioning"]
            spreads.append(
                f"{method} {count} modes: std {spread['conditioning_std']:.3g}, between-mode std "
                f"{spread['between_mode_std']:.3g}, mean abs {spread['conditioning_mean_abs']:.3g}"
            )
    large = [
        f"{method} {count} modes {result['large_sample']['mse']:.3f} +- {result['large_sample']['ci95']:.3f}"
        for method in METHODS
        for count in counts
        if (result := record["results"][count].get(method)) and "large_sample" in result
    ]
    text = "\n".join(lines) + "\n\nTask-conditioned outputs on 200 test tasks: " + "; ".join(spreads) + "."
    if large:
        text += (
            f"\n\nOn {LARGE_TEST_TASKS:,} test tasks (the 600 above and {LARGE_TEST_TASKS - TEST_TASKS:,} more): "
            + "; ".join(large)
            + "."
        )
    return text


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=800, help="meta-steps per method (shared among Multi-MAML's modes)"
    )
    parser.add_argument("--modes", default="2,3,5", help="mode counts to run: 2, 3 and/or 5")
    parser.add_argument(
        "--meta-batch-size",
        default="25",
        help="tasks per meta-step, or 'paper': the authors' 50, 75 and 125 for 2, 3 and 5 modes",
    )
    parser.add_argument("--meta-lr", type=float, default=0.001)
    parser.add_argument("--meta-lr-schedule", default="constant", choices=list(META_LR_SCHEDULES))
    parser.add_argument(
        "--meta-grad-clip",
        type=float,
        default=0.0,
        help="train.meta_grad_clip for every method (the authors' MMAML runs: 2); 0: off",
    )
    parser.add_argument("--inner-lr", type=float, default=0.01)
    parser.add_argument("--inner-steps", type=int, default=2)
    parser.add_argument(
        "--inner-grad-clip",
        type=float,
        default=0.0,
        help="algorithm.inner_grad_clip for every method (the authors' MMAML runs: 10); 0: off",
    )
    parser.add_argument(
        "--mmaml-encoder",
        default="set",
        choices=list(REGRESSION_ENCODERS),  # refused here, not after the methods before MMAML have trained
        help="algorithm.mmaml.encoder of MMAML: set, or lstm (the authors' bidirectional LSTM)",
    )
    parser.add_argument("--hidden", type=lambda s: [int(w) for w in s.split(",")], default=[40, 40])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma-separated, among {', '.join(METHODS)} (default: all)"
    )
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        help="write to --out one record of these results files (runs of the same settings on other mode "
        "counts or methods, e.g. run side by side), and stop",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--table", action="store_true", help="print the README table of --out's results and stop")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(args.out.read_text())))
        return
    if args.merge:
        record = merged_record([json.loads(path.read_text()) for path in args.merge], command_line(argv), args.merge)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.out}")
        return
    counts = [int(c) for c in args.modes.split(",")]
    args.methods = args.methods.split(",")
    if unknown_methods := [m for m in args.methods if m not in METHODS]:
        raise SystemExit(f"--methods: {unknown_methods} not among {', '.join(METHODS)}")
    if args.meta_batch_size != "paper" and not args.meta_batch_size.isdigit():
        raise SystemExit(f"--meta-batch-size: {args.meta_batch_size!r} is neither a number nor 'paper'")
    unknown = [c for c in counts if c not in MODE_SETS]
    if unknown:
        raise SystemExit(f"--modes: {unknown} not among {sorted(MODE_SETS)}")
    torch.set_num_threads(1)  # the shared 2-core machine: one core, so the other stays usable
    started = time.perf_counter()
    load_before = os.getloadavg()
    results = {str(count): run_modes(args, count) for count in counts}
    record = {
        "command": command_line(argv),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "torch_threads": 1,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "load_average_start": load_before,
            "load_average_end": os.getloadavg(),
        },
        "settings": {key: value if not isinstance(value, Path) else str(value) for key, value in vars(args).items()},
        "test_tasks": TEST_TASKS,
        "large_sample_test_tasks": LARGE_TEST_TASKS,
        "task_stream": TASK_STREAM,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "results": results,
        "paper": PAPER,
        "budget_note": "; ".join(
            f"{count} modes: {args.steps:,} meta-steps of {meta_batch_size(args, count)} tasks per method "
            f"({args.steps / PAPER_META_BATCHES:.1%} of the paper's {PAPER_META_BATCHES:,} meta-batches of "
            f"{PAPER_META_BATCH_SIZES[count]}) on an MLP {'-'.join(str(w) for w in args.hidden)}"
            for count in counts
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


def command_line(argv=None) -> str:
    """This script's command line, as a person would type it again (with DISTMETA_BENCH_RUNS, where
    the runs are, when set)."""
    arguments = sys.argv[1:] if argv is None else argv
    runs = os.environ.get("DISTMETA_BENCH_RUNS")
    prefix = [f"DISTMETA_BENCH_RUNS={shlex.quote(runs)}"] if runs else []
    return " ".join([*prefix, *(shlex.quote(a) for a in ["python", "benchmarks/multimodal_regression.py", *arguments])])


def merged_record(parts: list[dict], command: str, paths: list[Path]) -> dict:
    """One record of several runs' results files: their results by mode count and method, each
    part's command, date, wall time and machine under `parts`. The runs must share every
    setting but the mode counts and methods, and no (mode count, method) may come twice."""
    first = parts[0]
    results: dict[str, dict] = {}
    for path, part in zip(paths, parts, strict=True):
        differ = sorted(
            key
            for key in set(first["settings"]) | set(part["settings"])
            if key not in MERGE_MAY_DIFFER and first["settings"].get(key) != part["settings"].get(key)
        )
        if differ:
            raise SystemExit(f"--merge: {path} was run with other settings than {paths[0]}: {', '.join(differ)}")
        for count, methods in part["results"].items():
            for method, result in methods.items():
                if method in results.get(count, {}) and method != "mode_counts":
                    raise SystemExit(f"--merge: {path} has {count} modes / {method} again")
                results.setdefault(count, {})[method] = result
    return {
        **{key: first[key] for key in ("test_tasks", "task_stream", "paper")},
        "command": command,
        "date": max(part["date"] for part in parts),
        "settings": {key: value for key, value in first["settings"].items() if key not in MERGE_MAY_DIFFER},
        "wall_seconds": round(sum(part["wall_seconds"] for part in parts), 1),
        "results": dict(sorted(results.items(), key=lambda item: int(item[0]))),
        "budget_note": "; ".join(part["budget_note"] for part in parts),
        "parts": [
            {key: part[key] for key in ("command", "date", "wall_seconds", "machine")} | {"file": str(path)}
            for path, part in zip(paths, parts, strict=True)
        ],
    }


if __name__ == "__main__":
    main()
