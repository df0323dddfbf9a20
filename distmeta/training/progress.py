"""What a person sees during training: one line per log interval and a final table,
plus `metrics.jsonl` (for programs and plots) and TensorBoard event files
(`tensorboard --logdir <run_dir>/tensorboard`) in the run directory, a local folder
or a bucket (see `distmeta.storage`)."""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from distmeta.errors import StorageError
from distmeta.storage import Location, location

if TYPE_CHECKING:
    from tensorboardX import SummaryWriter


def format_duration(seconds: float) -> str:
    return str(timedelta(seconds=int(round(seconds))))


class ProgressLog:
    """Prints progress lines; appends every record to `<run_dir>/metrics.jsonl` and
    writes its numbers as TensorBoard scalars under `<run_dir>/tensorboard`.

    TensorBoard's writer needs a local folder: for a run in a bucket it writes to a
    temporary one, whose event file is uploaded whole at every flush.

    `before_write`, if given, is called before each record is written: a distributed run's
    check that it still owns the run (`runtime.session`), which raises if not."""

    def __init__(
        self,
        run_dir: str | Path | Location,
        total_steps: int,
        metric: str,
        print_fn=print,
        unit: str = "tasks",
        before_write: Callable[[], None] | None = None,
    ):
        self.path = location(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir()
        self.tensorboard: SummaryWriter | None = None
        self.tensorboard_folder: tempfile.TemporaryDirectory | None = None
        """The local folder of a bucket's TensorBoard events (None for a local run)."""
        self.total_steps = total_steps
        self.metric = metric
        self.unit = unit
        """What `count_tasks` counts: tasks, or a learned optimiser's "unroll steps"."""
        self.print = print_fn
        self.before_write = before_write
        self.started = time.perf_counter()
        self.interval_start = self.started
        self.interval_tasks = 0
        self.tasks = 0

    def count_tasks(self, tasks: int) -> None:
        self.interval_tasks += tasks
        self.tasks += tasks

    def record(self, record: dict) -> None:
        try:
            if self.before_write is not None:
                self.before_write()
            self._write(record)
        except OSError as error:  # storage full, read-only or gone: stop, naming it
            raise StorageError(self.path, f"the run's metrics could not be written ({error})") from None

    def _write(self, record: dict) -> None:
        self.path.append_text(json.dumps(record) + "\n")
        if "step" not in record:
            return
        if self.tensorboard is None:  # opened on first use: a run that logs nothing leaves no event file
            from tensorboardX import SummaryWriter  # imported here: `distmeta jobs` reads tables from this module

            # a suffix of its own: the file is named by the second it opened in, and a resume within
            # that second (same host) would otherwise overwrite the earlier session's events
            self.tensorboard = SummaryWriter(
                self._tensorboard_writer_folder(), filename_suffix=f".{uuid.uuid4().hex[:8]}"
            )
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                self.tensorboard.add_scalar(key, value, record["step"])
        self.tensorboard.flush()
        self._upload_tensorboard()

    def _tensorboard_writer_folder(self) -> str:
        target = self.path.parent / "tensorboard"
        if target.is_local:
            return target.path
        self.tensorboard_folder = tempfile.TemporaryDirectory(prefix="distmeta-tensorboard-")
        return self.tensorboard_folder.name

    def _upload_tensorboard(self) -> None:
        """A bucket's run: its event files as they now are (each is one upload: readers see whole ones)."""
        if self.tensorboard_folder is None:
            return
        for event_file in Path(self.tensorboard_folder.name).iterdir():
            (self.path.parent / "tensorboard" / event_file.name).write_bytes(event_file.read_bytes())

    def log_interval(
        self,
        step: int,
        start_step: int,
        meta_loss: float,
        train_score: float,
        val: dict | None,
        extra: dict | None = None,
        seconds_left: float | None = None,
    ) -> dict:
        """Print and record one line, with the numbers of `extra` in the record; returns the record.
        `seconds_left`: when the run will stop before `total_steps` (a time limit, or 0 when it
        stops now), so that its ETA is not the hours that the remaining steps would take."""
        now = time.perf_counter()
        tasks_per_s = self.interval_tasks / max(now - self.interval_start, 1e-9)
        done_fraction = (step - start_step) / max(self.total_steps - start_step, 1)
        elapsed = now - self.started
        record: dict[str, float | str | None] = {
            "step": step,
            "meta_loss": meta_loss,
            f"train_{self.metric}": train_score,
            "tasks_per_s": tasks_per_s,
            # since this process began training: start-up (Ray, workers, data) is not in it
            "mean_tasks_per_s": self.tasks / max(elapsed, 1e-9),
            "elapsed_s": elapsed,
            "eta_s": eta_seconds(elapsed, done_fraction, seconds_left),
        }
        if self.unit != "tasks":
            record["rate_unit"] = self.unit  # tasks_per_s counts these instead
        if val is not None:
            record[f"val_{self.metric}"] = val["mean"]
            record[f"val_{self.metric}_ci95"] = val["ci95"]
        record.update(extra or {})
        self.print(format_line(record, self.total_steps, self.metric))
        self.record(record)
        self.interval_start, self.interval_tasks = now, 0
        return record


def eta_seconds(elapsed: float, done_fraction: float, seconds_left: float | None) -> float | None:
    """The time the remaining steps take at the pace so far, or `seconds_left` if that is sooner."""
    by_steps = elapsed / done_fraction - elapsed if done_fraction > 0 else None
    if seconds_left is None:
        return by_steps
    return seconds_left if by_steps is None else min(by_steps, seconds_left)


def format_line(record: dict, total_steps: int, metric: str) -> str:
    """The progress line of one metrics record."""

    def score(value: float) -> str:
        return f"{100 * value:.2f}%" if metric == "accuracy" else f"{value:.4f}"

    line = (
        f"step {record['step']:>{len(str(total_steps))}}/{total_steps} | meta-loss {record['meta_loss']:.4f} | "
        f"train {metric} {score(record[f'train_{metric}'])}"
    )
    if f"val_{metric}" in record:
        line += f" | val {metric} {score(record[f'val_{metric}'])}"
    eta = record.get("eta_s")
    line += (
        f" | {record['tasks_per_s']:,.0f} {record.get('rate_unit', 'tasks')}/s | "
        f"ETA {format_duration(eta) if eta is not None else '?'}"
    )
    return line + (f" | stopping: {record['stopped']}" if "stopped" in record else "")


def summary_table(rows: list[tuple[str, str]]) -> str:
    """A two-column table, for the end of a run."""
    width = max(len(key) for key, _ in rows)
    rule = "-" * (width + 3 + max(len(value) for _, value in rows))
    lines = [rule] + [f"{key:<{width}} | {value}" for key, value in rows] + [rule]
    return "\n".join(lines)


def column_table(headers: list[str], rows: list[list[str]]) -> str:
    """A table with a header row, columns padded to their widest cell."""
    widths = [max([len(header)] + [len(row[column]) for row in rows]) for column, header in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return " | ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()

    rule = "-" * len(" | ".join(" " * width for width in widths))
    return "\n".join([rule, line(headers), rule, *map(line, rows), rule])
