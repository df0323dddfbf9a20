"""When a run stops before `train.steps`: a target accuracy reached, or its time used up.

`train.stop_at_accuracy` ends a run at the first validation whose mean accuracy reaches
it, so that the run's last checkpoint holds the meta-parameters of that crossing (time to
accuracy); `train.time_limit_minutes` ends it at the first log interval after that much
training (the loop's own time, validations included, start-up not). Every rank decides from
the same validation (on Ray, shared and gathered), but only the leader's clock counts: on Ray
its reading is sent to every rank (see `train_loop`), so that all of them stop after the same step.
"""

from __future__ import annotations

import time

from distmeta.config import TrainConfig


class StopRules:
    """A run's early-stop rules, with the clock of its training loop (started on creation)."""

    def __init__(self, train: TrainConfig):
        self.target = train.stop_at_accuracy or None
        self.limit_s = train.time_limit_minutes * 60 or None
        self.started = time.perf_counter()

    @property
    def timed(self) -> bool:
        """Whether the leader's clock can stop the run (on Ray, its reading is then broadcast at
        each log interval; without a time limit, the loop needs no collective of its own)."""
        return self.limit_s is not None

    def out_of_time(self) -> bool:
        return self.limit_s is not None and time.perf_counter() - self.started >= self.limit_s

    def seconds_left(self) -> float | None:
        """Of `train.time_limit_minutes`, on this process's clock (None: no limit)."""
        if self.limit_s is None:
            return None
        return max(self.limit_s - (time.perf_counter() - self.started), 0.0)

    def reason(self, val: dict | None, out_of_time: bool) -> str | None:
        """Why the run stops after this log interval (None: it goes on); `val` is its
        validation (`EvalResult.to_dict()`), if it had one."""
        if self.target is not None and val is not None and val["mean"] >= self.target:
            return f"val accuracy {100 * val['mean']:.2f}% reached train.stop_at_accuracy {100 * self.target:g}%"
        if out_of_time and self.limit_s is not None:
            return f"train.time_limit_minutes ({self.limit_s / 60:g}) used up"
        return None
