"""Time to 95%: wall time of `distmeta train` until held-out Omniglot 5-way 1-shot accuracy reaches a target.

    python benchmarks/time_to_accuracy.py                                  # every method, 1 and 2 workers, 10 min each
    python benchmarks/time_to_accuracy.py --methods protonet --workers 1 --cap-minutes 0.5   # a quick check

For each method (ProtoNets, first-order MAML, ANIL, MAML, in that order) and worker count, it runs

    distmeta train benchmarks/configs/omniglot_base.yaml --workers W --cpus-per-worker 1 --no-eval \\
        --storage runs/time-to-accuracy --name <method>-<W>w --set <the method's settings> \\
        --set train.stop_at_accuracy=0.95 --set train.time_limit_minutes=<cap>

in a process of its own (a local Ray cluster, Ray Train workers as `distmeta train` runs them), so the
run validates every `val_every` steps on the validation alphabets (200 tasks, mean and 95% interval)
and stops at the first validation whose mean reaches the target, or at the cap. The crossing is read
from the run's `metrics.jsonl`; its checkpoint (the run's last) is then confirmed on the test
alphabets by `distmeta eval <run> --tasks 600`. Time to accuracy is the training loop's time at the
crossing (`elapsed_s` of that record: validations included) plus the command's time outside the loop
(starting Ray, the workers and the data; stopping them): the whole command, as a user waits for it.
The split is distmeta's own, by alphabet (omniglot_base.yaml: 5 alphabets to meta-train, 1 to
validate, 2 to test). With the same seed, 2 workers take exactly the steps 1 worker takes (to float
rounding), so the crossing step should agree and only the time differ.

Results go to benchmarks/results/time_to_accuracy.json, one row per configuration; a later run of
some configurations replaces their rows and keeps the others (each row has its own command, date and
load average). Skipped, with the reason, when ../shared/data is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import load_average, machine  # noqa: E402  (benchmarks/accuracy.py)

DATA = ROOT.parent / "shared" / "data" / "omniglot"
CONFIG = "benchmarks/configs/omniglot_base.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "time_to_accuracy.json"
STORAGE = "runs/time-to-accuracy"
TEST_TASKS = 600

# What every configuration shares. The rate stays constant: a cosine schedule anneals over
# train.steps, which a run stopped by a target or a cap never reaches. Checkpoints only where the
# run stops (its crossing, or the cap); log lines, where the cap is checked, every 10 steps.
COMMON = [
    "train.steps=1000000",
    "train.meta_lr_schedule=constant",
    "train.checkpoint_every=0",
    "train.log_every=10",
    "train.val_tasks=200",
    "train.compile=off",
    "train.vectorize=auto",
]

# The settings of each method, chosen for speed from the accuracy suite's measured ones (not
# searched), and why (benchmarks/suites/accuracy.yaml has the settings they start from).
METHODS = {
    "protonet": {
        "label": "ProtoNets",
        "set": [
            "algorithm.name=protonet",
            "algorithm.test_inner_steps=0",
            "task.train_ways=20",
            "train.meta_batch_size=2",
            "train.val_every=50",
        ],
        "why": "no inner loop: a step is one forward and backward pass; meta-trained on 20-way episodes "
        "(`task.train_ways`; Snell et al. trained 1-shot on 60-way ones), validated and tested 5-way; "
        "meta-batch 2, one episode per worker with 2, is 40 classes and 240 images an update, as 8 "
        "5-way episodes were (measured here, 1 worker, the same steps: 93.66% against 92.24% on the "
        "validation alphabet at step 600, 94.96% against 94.30% at the best of steps 1,200-1,400); a "
        "validation (200 tasks, no adaptation) takes about 4 s on 1 worker against 15 s for 50 steps (a fifth "
        "of the loop) and about 2 s on 2 workers, which share its tasks; every 50 steps, for a crossing read to "
        "the nearest 50 steps",
    },
    "fomaml": {
        "label": "first-order MAML",
        "set": [
            "algorithm.name=fomaml",
            "algorithm.inner_lr=0.4",
            "algorithm.inner_steps=1",
            "algorithm.test_inner_steps=3",
            "train.meta_batch_size=8",
            "train.val_every=50",
        ],
        "why": "MAML's inner loop (1 step at 0.4) without second-order terms; meta-batch 8 (twice the updates a "
        "minute of 16); validations adapt 3 steps, not 10 (the README's MAML run: 97.23% with 3 against "
        "97.49% with 10, within their intervals), a third of the validation time",
    },
    "anil": {
        "label": "ANIL",
        "set": [
            "algorithm.name=anil",
            "algorithm.inner_lr=0.4",
            "algorithm.inner_steps=1",
            "algorithm.test_inner_steps=10",
            "train.meta_batch_size=8",
            "train.val_every=50",
        ],
        "why": "only the head adapts, so adaptation is cheap: 10 steps at validation as in the suite (~8 ms a "
        "task); meta-batch 8",
    },
    "maml": {
        "label": "MAML",
        "set": [
            "algorithm.name=maml",
            "algorithm.inner_lr=0.4",
            "algorithm.inner_steps=1",
            "algorithm.test_inner_steps=3",
            "train.meta_batch_size=8",
            "train.val_every=50",
        ],
        "why": "second order, 1 inner step at 0.4 as in the MAML paper; meta-batch 8; validations adapt 3 steps",
    },
}
SHARED_CHOICES = (
    "Conv4 on the CPU: `train.vectorize: auto` runs the tasks in a loop (vmap is ~2.6x slower for "
    "Conv4 here, engine_speed.json); `train.compile: off`, which `auto` also chooses for Conv4 on a "
    "CPU (no measured gain, and ~40 s of compiling out of a 10-minute budget); 1 CPU (torch thread) "
    "per worker; a constant Adam rate of 1e-3 (a cosine schedule needs the run's length)"
)


def run_name(method: str, workers: int) -> str:
    return f"{method}-{workers}w"


def train_argv(method: str, workers: int, target: float, cap_minutes: float) -> list[str]:
    argv = [
        "train",
        CONFIG,
        "--workers",
        str(workers),
        "--cpus-per-worker",
        "1",
        "--no-eval",
        "--storage",
        STORAGE,
        "--name",
        run_name(method, workers),
    ]
    for override in [
        *COMMON,
        *METHODS[method]["set"],
        f"train.stop_at_accuracy={target}",
        f"train.time_limit_minutes={cap_minutes:g}",
    ]:
        argv += ["--set", override]
    return argv


def eval_argv(run_dir: str, json_path: str) -> list[str]:
    return ["eval", run_dir, "--tasks", str(TEST_TASKS), "--json", json_path]


def distmeta(argv: list[str]) -> tuple[int, float]:
    """Run `distmeta ARGV` in its own process, its output shown as it comes; (exit status, wall seconds)."""
    print("$ " + shlex.join(["distmeta", *argv]), flush=True)
    started = time.perf_counter()
    status = subprocess.run([sys.executable, "-m", "distmeta", *argv], cwd=ROOT).returncode
    return status, time.perf_counter() - started


def validations(run_dir: Path) -> list[dict]:
    """Every validation of the run, in order: step, training-loop seconds, mean and interval."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [
        {
            "step": r["step"],
            "elapsed_s": r["elapsed_s"],
            "val_accuracy": r["val_accuracy"],
            "ci95": r["val_accuracy_ci95"],
        }
        for r in records
        if "val_accuracy" in r
    ]


def run_configuration(method: str, workers: int, target: float, cap_minutes: float) -> dict:
    """Train until the target or the cap, confirm a crossing on the test split; the row of the JSON."""
    run_dir = ROOT / STORAGE / run_name(method, workers)
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run each time, never a resumed one
    started_at, load_start = datetime.now().isoformat(timespec="seconds"), load_average()
    argv = train_argv(method, workers, target, cap_minutes)
    status, train_wall = distmeta(argv)
    row = {
        "method": method,
        "label": METHODS[method]["label"],
        "workers": workers,
        "target": target,
        "cap_minutes": cap_minutes,
        "settings": METHODS[method]["set"],
        "why": METHODS[method]["why"],
        "train_command": shlex.join(["distmeta", *argv]),
        "train_exit_status": status,
        "train_wall_time_s": train_wall,
        "date": started_at,
        "load_average": {"start": load_start},
    }
    if status != 0:
        row["load_average"]["end"] = load_average()
        return {**row, "failed": f"distmeta train exited with {status} (its output is above)"}
    summary = json.loads((run_dir / "summary.json").read_text())
    history = validations(run_dir)
    loop_s = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])["elapsed_s"]
    crossing = next((v for v in history if v["val_accuracy"] >= target), None)
    best = max(history, key=lambda v: v["val_accuracy"])
    row.update(
        {
            "steps": summary["steps"],
            "tasks_per_s": summary["tasks_per_s"],
            "loop_s": loop_s,
            "outside_loop_s": train_wall - loop_s,
            "validations": history,
            "best": best,
            "crossing": crossing,
        }
    )
    row.update(test_accuracy(method, workers))
    if crossing is not None:
        row["time_to_target_s"] = crossing["elapsed_s"] + row["outside_loop_s"]
    row["load_average"]["end"] = load_average()
    return row


def test_accuracy(method: str, workers: int) -> dict:
    """The run's last checkpoint meta-tested on the test alphabets: the crossing's, or where the
    cap stopped it (what a user gets from those minutes, whether or not validation reached the target)."""
    run_dir = ROOT / STORAGE / run_name(method, workers)
    json_path = ROOT / STORAGE / f"{run_name(method, workers)}-test.json"
    eval_args = eval_argv(str(run_dir.relative_to(ROOT)), str(json_path.relative_to(ROOT)))
    status, eval_wall = distmeta(eval_args)
    test = {**json.loads(json_path.read_text()), "eval_wall_time_s": eval_wall} if status == 0 else None
    return {
        "eval_command": shlex.join(["distmeta", *eval_args]),
        "test": test or {"failed": f"distmeta eval exited with {status}"},
    }


def outcome(row: dict) -> str:
    """The table's cell for one configuration."""
    if "failed" in row:
        return f"failed: {row['failed']}"
    if row["crossing"] is None:
        best = row["best"]
        return (
            f"not reached in {row['cap_minutes']:g} min (best {100 * best['val_accuracy']:.2f}% at step {best['step']})"
        )
    crossing = row["crossing"]
    return (
        f"{_minutes(row['time_to_target_s'])} (step {crossing['step']}: val {100 * crossing['val_accuracy']:.2f}% "
        f"+- {100 * crossing['ci95']:.2f}%)"
    )


def test_cell(row: dict) -> str:
    test = row.get("test")
    if not test:
        return "-"
    if "failed" in test:
        return test["failed"]
    return (
        f"{100 * test['mean']:.2f}% +- {100 * test['ci95']:.2f}% ({test['tasks']} tasks, {test['inner_steps']} steps)"
    )


def _minutes(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def table(rows: list[dict]) -> str:
    from distmeta.training.progress import column_table

    headers = [
        "method",
        "workers",
        "time to target",
        "test accuracy at the crossing (else at the cap)",
        "steps",
        "tasks/s",
        "outside the loop",
        "load",
    ]
    cells = []
    for row in rows:
        load = row["load_average"]
        cells.append(
            [
                row["label"],
                str(row["workers"]),
                outcome(row),
                test_cell(row),
                str(row.get("steps", "-")),
                f"{row['tasks_per_s']:.1f}" if row.get("tasks_per_s") else "-",
                _minutes(row["outside_loop_s"]) if "outside_loop_s" in row else "-",
                f"{load['start'][0]:.1f} -> {load['end'][0]:.1f}" if load.get("start") and load.get("end") else "-",
            ]
        )
    return column_table(headers, cells)


def write_results(path: Path, rows: list[dict], command: str) -> dict:
    """The JSON with these rows, keeping the rows of configurations not run this time."""
    earlier = json.loads(path.read_text()) if path.is_file() else {}
    ran = {(row["method"], row["workers"]) for row in rows}
    kept = [row for row in earlier.get("results", []) if (row["method"], row["workers"]) not in ran]
    order = {method: i for i, method in enumerate(METHODS)}
    results = sorted(kept + rows, key=lambda row: (order[row["method"]], row["workers"]))
    data = {
        "benchmark": "time to accuracy, Omniglot 5-way 1-shot, held-out alphabets",
        "command": command,
        "niceness": os.nice(0),
        "config": CONFIG,
        "common_settings": COMMON,
        "shared_choices": SHARED_CHOICES,
        "split": "distmeta's own by alphabet (task.omniglot.split_seed 0): 5 alphabets to meta-train, "
        "1 to validate, 2 to test, of images_background_small1 + small2",
        "machine": machine(),
        "finished": datetime.now().isoformat(timespec="seconds"),
        "not_run": [
            f"{m}-{w}w"
            for m in METHODS
            for w in (1, 2)
            if not any(r["method"] == m and r["workers"] == w for r in results)
        ],
        "results": results,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return data


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma-separated, run in this order (default {','.join(METHODS)})"
    )
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    parser.add_argument(
        "--cap-minutes", type=float, default=10.0, help="training time allowed each configuration (default 10)"
    )
    parser.add_argument("--target", type=float, default=0.95, help="validation accuracy to reach (default 0.95)")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"default {RESULTS.relative_to(ROOT)}")
    parser.add_argument(
        "--test-only",
        action="store_true",
        help="train nothing: meta-test the last checkpoint of each configuration's existing run, and "
        "update its row's test accuracy (for rows recorded before the cap's checkpoint was tested)",
    )
    args = parser.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)} (choose from {', '.join(METHODS)})")
    args.workers = [int(w) for w in args.workers.split(",")]
    if any(w < 1 for w in args.workers) or args.cap_minutes <= 0 or not 0 < args.target <= 1:
        parser.error("--workers at least 1, --cap-minutes more than 0, --target in (0, 1]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not DATA.is_dir():
        print(
            f"time_to_accuracy.py: skipped: {DATA} is missing (the real Omniglot subsets; see ../shared/data/README.md)"
        )
        return 0
    command = shlex.join(["python", "benchmarks/time_to_accuracy.py", *(sys.argv[1:] if argv is None else argv)])
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if args.test_only:
        return test_existing_runs(args)
    rows: list[dict] = []
    for method in args.methods:
        for workers in args.workers:
            print(
                f"== {METHODS[method]['label']}, {workers} worker(s): up to {args.cap_minutes:g} min of training "
                f"to {100 * args.target:g}% validation accuracy",
                flush=True,
            )
            rows.append(
                {**run_configuration(method, workers, args.target, args.cap_minutes), "benchmark_command": command}
            )
            data = write_results(args.json, rows, command)  # after each: an interrupted run keeps what it did
            print(table(rows), flush=True)
    print(f"\nwrote {args.json}; all configurations recorded so far:")
    print(table(data["results"]))
    return 0


def test_existing_runs(args: argparse.Namespace) -> int:
    """`--test-only`: the test accuracy of each configuration's recorded run, written into its row."""
    data = json.loads(args.json.read_text()) if args.json.is_file() else {"results": []}
    recorded = {(row["method"], row["workers"]): row for row in data["results"]}
    for method in args.methods:
        for workers in args.workers:
            row = recorded.get((method, workers))
            if row is None or "failed" in row or not (ROOT / STORAGE / run_name(method, workers)).is_dir():
                print(f"{run_name(method, workers)}: no recorded run to test; skipped", flush=True)
                continue
            row.update(test_accuracy(method, workers))
    args.json.write_text(json.dumps(data, indent=2) + "\n")
    print(table(data["results"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
