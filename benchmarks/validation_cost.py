"""What the validations of finished runs cost, read from their `metrics.jsonl`.

    python benchmarks/validation_cost.py RUN_DIR [RUN_DIR ...] [--json PATH]

A run that logs every `train.log_every` steps and validates every `train.val_every` steps
records the loop's elapsed time at each log line. An interval without a validation is the
steps alone; one with a validation is the steps plus the validation. So a validation costs
its interval minus the median interval without one (the median: robust to the odd slow
interval on a shared machine). Prints a table and writes JSON (default
benchmarks/results/validation_cost.json): this command and each run's figures and folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def intervals(records: list[dict]) -> tuple[list[float], list[float]]:
    """The seconds of each log interval after the first line: (without a validation, with one)."""
    plain, validated = [], []
    for before, after in zip(records, records[1:]):
        seconds = after["elapsed_s"] - before["elapsed_s"]
        (validated if any(key.startswith("val_") for key in after) else plain).append(seconds)
    return plain, validated


def validation_cost(run_dir: Path) -> dict:
    """A run's median interval without a validation and the mean extra time of one with it."""
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        raise SystemExit(f"{run_dir}: no metrics.jsonl (not a distmeta run folder?)")
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    records = [record for record in records if "elapsed_s" in record]  # not the "resumed" events
    plain, validated = intervals(records)
    if not plain or not validated:
        raise SystemExit(f"{metrics}: needs log intervals both with and without a validation")
    steps = records[1]["step"] - records[0]["step"]
    interval_s = statistics.median(plain)
    extra = [seconds - interval_s for seconds in validated]
    return {
        "run": str(run_dir),
        "steps_per_interval": steps,
        "interval_s": interval_s,
        "plain_intervals": len(plain),
        "validation_s": statistics.mean(extra),
        "validation_s_each": extra,
        "loop_s": records[-1]["elapsed_s"],
        "last_step": records[-1]["step"],
    }


def table(rows: list[dict]) -> str:
    lines = [
        f"{'run':<48} {'steps':>5} {'interval s':>10} {'validation s':>12} {'validations':>11} {'loop s':>7}",
    ]
    for row in rows:
        lines.append(
            f"{row['run'][-48:]:<48} {row['steps_per_interval']:>5} {row['interval_s']:>10.2f} "
            f"{row['validation_s']:>12.2f} {len(row['validation_s_each']):>11} {row['loop_s']:>7.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="distmeta run folders")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "validation_cost.json")
    args = parser.parse_args(argv)
    rows = [validation_cost(run) for run in args.runs]
    print(table(rows))
    command = " ".join(["python", "benchmarks/validation_cost.py", *(sys.argv[1:] if argv is None else argv)])
    args.json.write_text(json.dumps({"command": command, "runs": rows}, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
