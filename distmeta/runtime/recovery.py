"""How a distributed run recovers from a lost worker or node, and when it gives up.

Ray Train restarts the whole worker group after a worker dies (its process killed, its
node gone), up to `max_failures` times, and the new group resumes from the newest
checkpoint (`runtime.worker.restored_checkpoint`). Placing the new group needs the
cluster to hold every worker again: on the remaining nodes, or once a node comes back
(by hand, or from the autoscaler). Ray waits for that in rounds of its worker-group
start timeout (`RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S`, 60 s) and, left alone, retries
those rounds for ever: a run whose node is gone for good would hang. So the rounds are
bounded to `--scale-timeout` in all, the same bound as the wait for capacity at the
start, and when recovery gives up the driver raises a `RecoveryFailedError` that says
why and from which checkpoint the same command resumes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ray.train import ControllerError, FailureConfig, TrainingFailedError, WorkerGroupError
from ray.train.v2._internal.constants import DEFAULT_WORKER_GROUP_START_TIMEOUT_S, WORKER_GROUP_START_TIMEOUT_S_ENV_VAR
from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError

from distmeta.errors import RecoveryFailedError
from distmeta.runtime.autoscaling import read_capacity
from distmeta.runtime.capacity import WorkerShape, describe
from distmeta.storage import Location
from distmeta.training.checkpoint import newest_readable_checkpoint


def group_start_timeout_s() -> float:
    """How long one attempt to place a worker group waits (Ray passes the driver's value to its controller)."""
    return float(os.environ.get(WORKER_GROUP_START_TIMEOUT_S_ENV_VAR, DEFAULT_WORKER_GROUP_START_TIMEOUT_S))


def placement_retries(scale_timeout_s: float) -> int:
    """Retries of a worker group's placement after the first attempt, so that all of them
    together wait at least `scale_timeout_s` (one attempt when that is shorter than one round)."""
    return max(math.ceil(scale_timeout_s / group_start_timeout_s()) - 1, 0)


def failure_config(max_failures: int, scale_timeout_s: float) -> FailureConfig:
    """Restart the workers up to `max_failures` times; wait at most about `scale_timeout_s`
    in all for the cluster to hold them again (Ray counts a placement that timed out as a
    controller failure, which it would otherwise retry without end)."""
    return FailureConfig(max_failures=max_failures, controller_failure_limit=placement_retries(scale_timeout_s))


@contextmanager
def recovery_reported(
    run_dir: Path | Location, workers: int, worker: WorkerShape, max_failures: int, scale_timeout_s: float
) -> Iterator[None]:
    """Inside: a `fit()`. A failure Ray Train gave up recovering from leaves as a
    `RecoveryFailedError` naming the cause and the checkpoint the same command resumes from."""
    try:
        yield
    except TrainingFailedError as error:
        resume_step = newest_step(run_dir)
        raise RecoveryFailedError(cause(error, workers, worker, max_failures, scale_timeout_s), resume_step) from error


def cause(
    error: TrainingFailedError, workers: int, worker: WorkerShape, max_failures: int, scale_timeout_s: float
) -> str:
    """Why recovery stopped, in words."""
    if isinstance(error, ControllerError) and isinstance(error.controller_failure, WorkerGroupStartupTimeoutError):
        return (
            f"the cluster did not hold the {workers} worker(s) x {worker} within --scale-timeout "
            f"{scale_timeout_s:g} s (a node lost mid-run, or its resources taken): {describe(read_capacity())}"
        )
    if isinstance(error, WorkerGroupError):
        return (
            f"the workers failed {max_failures + 1} time(s), more than the {max_failures} restart(s) allowed "
            f"(max_failures); the last failure: {first_failure(error)}"
        )
    failure = error.controller_failure if isinstance(error, ControllerError) else error
    return f"Ray Train stopped the run: {type(failure).__name__}: {first_line(str(failure))}"


def first_failure(error: WorkerGroupError) -> str:
    """The lowest rank's failure, in one line."""
    if not error.worker_failures:
        return first_line(str(error))
    rank = min(error.worker_failures)
    failure = error.worker_failures[rank]
    return f"rank {rank}: {type(failure).__name__}: {first_line(str(failure))}"


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def newest_step(run_dir: Path | Location) -> int | None:
    payload = newest_readable_checkpoint(run_dir)
    return None if payload is None else payload["step"]
