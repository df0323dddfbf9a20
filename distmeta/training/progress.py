"""What a person sees during training: one line per log interval and a final table,
plus `metrics.jsonl` in the run directory for programs and plots."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path


def format_duration(seconds: float) -> str:
    return str(timedelta(seconds=int(round(seconds))))


class ProgressLog:
    """Prints progress lines and appends every record to `<run_dir>/metrics.jsonl`."""

    def __init__(self, run_dir: str | Path, total_steps: int, metric: str, print_fn=print):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.total_steps = total_steps
        self.metric = metric
        self.print = print_fn
        self.started = time.perf_counter()
        self.interval_start = self.started
        self.interval_tasks = 0

    def count_tasks(self, tasks: int) -> None:
        self.interval_tasks += tasks

    def record(self, record: dict) -> None:
        with self.path.open("a") as file:
            file.write(json.dumps(record) + "\n")

    def log_interval(self, step: int, start_step: int, meta_loss: float, train_score: float, val: dict | None) -> dict:
        """Print and record one line; returns the record."""
        now = time.perf_counter()
        tasks_per_s = self.interval_tasks / max(now - self.interval_start, 1e-9)
        done_fraction = (step - start_step) / max(self.total_steps - start_step, 1)
        elapsed = now - self.started
        eta = elapsed / done_fraction - elapsed if done_fraction > 0 else float("nan")
        record = {
            "step": step,
            "meta_loss": meta_loss,
            f"train_{self.metric}": train_score,
            "tasks_per_s": tasks_per_s,
            "elapsed_s": elapsed,
        }
        line = (
            f"step {step:>{len(str(self.total_steps))}}/{self.total_steps} | meta-loss {meta_loss:.4f} | "
            f"train {self.metric} {self._fmt(train_score)}"
        )
        if val is not None:
            record[f"val_{self.metric}"] = val["mean"]
            record[f"val_{self.metric}_ci95"] = val["ci95"]
            line += f" | val {self.metric} {self._fmt(val['mean'])}"
        line += f" | {tasks_per_s:,.0f} tasks/s | ETA {format_duration(eta) if eta == eta else '?'}"
        self.print(line)
        self.record(record)
        self.interval_start, self.interval_tasks = now, 0
        return record

    def _fmt(self, value: float) -> str:
        return f"{100 * value:.2f}%" if self.metric == "accuracy" else f"{value:.4f}"


def summary_table(rows: list[tuple[str, str]]) -> str:
    """A two-column table, for the end of a run."""
    width = max(len(key) for key, _ in rows)
    rule = "-" * (width + 3 + max(len(value) for _, value in rows))
    lines = [rule] + [f"{key:<{width}} | {value}" for key, value in rows] + [rule]
    return "\n".join(lines)
