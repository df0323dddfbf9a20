"""Faults injected into real distributed runs at a known step, for the fault table
(`benchmarks/fault_injection.py`) and the node-loss tests (`tests/runtime/test_node_loss.py`).

Each `*_worker` function returns a per-worker function for a `TorchTrainer`: the real one
(`distmeta.runtime.worker.train_worker`) with one thing changed. A crash-like fault
happens once: a marker file next to the run folder (`<run_dir>.<fault>`) remembers it, so
that the workers Ray Train restarts run normally and the run can be checked to resume.
Update `n` is the one that takes the meta-parameters from step n to step n + 1; a fault
"before update n" loses the steps after the last checkpoint, up to n.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from pathlib import Path

import ray.cloudpickle

# Ray's workers cannot import this module by name (the benchmarks folder is no package): ship it by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

HELD = "held"
DIED = "died"


def marker(run_dir: str | Path, fault: str) -> Path:
    """The file that says `fault` happened to the run in `run_dir`."""
    return Path(f"{run_dir}.{fault}")


def before_update(at_step: int, fault: str, act):
    """The real per-worker function, except that every rank calls `act()` just before update
    `at_step`, the first time only (the marker of `fault` is made first)."""

    def worker_function(loop_config: dict) -> None:
        import distmeta.runtime.worker as worker

        done = marker(loop_config["run_dir"], fault)
        real_step = worker.distributed_meta_step

        def faulty_step(*arguments, **keywords):
            step = real_step(*arguments, **keywords)

            def step_or_fault(experiment, state):
                if state.step == at_step and not done.exists():
                    done.touch()
                    act()
                return step(experiment, state)

            return step_or_fault

        worker.distributed_meta_step = faulty_step
        worker.train_worker(loop_config)

    return worker_function


def held_worker(at_step: int):
    """Workers that stop before update `at_step` and wait there until killed (their node
    removed, their driver killed): the marker says they are waiting."""
    return before_update(at_step, HELD, lambda: time.sleep(3600))


def dying_worker(at_step: int):
    """Workers whose processes exit abruptly before update `at_step`, as if killed."""
    return before_update(at_step, DIED, lambda: os._exit(1))


def nan_data_worker(at_step: int):
    """Workers whose tasks of update `at_step` have NaN targets (bad data): the meta-loss
    is NaN there, a user error that is not retried."""

    def worker_function(loop_config: dict) -> None:
        import torch

        import distmeta.runtime.step as step
        import distmeta.runtime.worker as worker

        real_meta_batch = step.meta_batch

        def meta_batch(experiment, at, indices=None):
            batch = real_meta_batch(experiment, at, indices)
            if at == at_step:
                batch.query_y.fill_(torch.nan)
            return batch

        step.meta_batch = meta_batch
        worker.train_worker(loop_config)

    return worker_function


def read_only_storage_worker(at_step: int):
    """Workers whose storage turns read-only when Ray copies the checkpoint of step
    `at_step` there: nothing of it is written."""

    def worker_function(loop_config: dict) -> None:
        import ray.train.v2._internal.execution.storage as ray_storage

        import distmeta.runtime.worker as worker

        real_copy = ray_storage._pyarrow_fs_copy_files
        name = f"step_{at_step:08d}.pt"

        def copy(source, destination, **kwargs):
            if (Path(source) / "checkpoints" / name).exists():
                raise OSError(errno.EROFS, "Read-only file system")
            return real_copy(source, destination, **kwargs)

        ray_storage._pyarrow_fs_copy_files = copy
        worker.train_worker(loop_config)

    return worker_function


def truncate(path: Path) -> None:
    """Cut a file to half its length, as a copy that stopped half-way leaves it."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def wait_for(path: Path, timeout_s: float, poll_s: float = 0.05) -> bool:
    """Whether `path` exists within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
    return True
