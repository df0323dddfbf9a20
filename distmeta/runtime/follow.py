"""Progress on the driver: rank 0 writes `metrics.jsonl`; the driver prints it as it grows.

Workers' own stdout is not forwarded (Ray's controller and worker chatter would
bury the lines a person wants), so the driver shows exactly the single-process
trainer's lines, whichever node rank 0 runs on (the storage is shared).
"""

from __future__ import annotations

import json
import threading

from distmeta.storage import Location
from distmeta.training.progress import format_line


class MetricsFollower:
    """Prints each new record of a `metrics.jsonl` (local, or in a bucket) from a background thread until stopped."""

    def __init__(self, path: Location, total_steps: int, metric: str, print_fn=print, poll_s: float = 0.5):
        self.path, self.total_steps, self.metric = path, total_steps, metric
        self.print, self.poll_s = print_fn, poll_s
        self.offset = path.size() if path.exists() else 0  # a resumed run's old lines were shown before
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="metrics-follower", daemon=True)

    def __enter__(self) -> MetricsFollower:
        self.thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stopped.set()
        self.thread.join()
        self._print_new_records()  # whatever arrived after the last poll

    def _run(self) -> None:
        while not self.stopped.wait(self.poll_s):
            self._print_new_records()

    def _print_new_records(self) -> None:
        if not self.path.exists():
            return
        new = self.path.read_from(self.offset)
        complete = new[: new.rfind(b"\n") + 1]  # a line still being written waits for the next poll
        self.offset += len(complete)
        for line in complete.decode().splitlines():
            self.print(self._describe(json.loads(line)))

    def _describe(self, record: dict) -> str:
        if record.get("event") == "resumed":
            note = f"; {record['note']}" if "note" in record else ""  # a learned optimiser's unrolls
            return f"workers restarted: resumed from the checkpoint of step {record['from_step']}{note}"
        return format_line(record, self.total_steps, self.metric)
