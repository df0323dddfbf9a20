"""Prefetching a step's tasks (`train.prefetch`): step t+1's batch drawn while step t computes.

Task sampling is counter-based (`distmeta.tasks.streams`): the tasks of a step depend on
(run seed, split, step, task index) alone, never on what ran before. So a background thread
can draw the next step's share of the meta-batch, and on a GPU copy it to the device, while
the current step computes, and the batch a step uses is exactly the one sampling in line
would give it. A batch drawn for a step that is not the one asked for next (a run that
stopped early, or one whose step changed) is discarded; an error raised while drawing it
(a data file gone) is raised by `batch` of the step that needed it, unchanged.

`auto` prefetches on a GPU, where the step's compute is short and the sampling (CPU work and
the host-to-device copy, from pinned memory on a stream of its own) becomes a large share of
it. On a CPU it does not: there the sampling is a small share of a step (~1.5% of a sinusoid
MAML step of 1,000 tasks, ~0.1% of an Omniglot Conv4 one), which is all that overlapping can
save, and the thread takes its CPU time from the cores the step uses (a Ray worker runs one
torch thread on its one CPU). Measured on a shared 2-core CPU (`benchmarks/prefetch.py`, figures
in README's part on task sampling), on was not slower than off: off on a CPU is caution, not a
measured loss, and `on` may be set there.

Pure torch, no Ray: the in-process trainer, a Ray worker's step and the throughput bench use it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch

from distmeta.tasks import TaskBatch

THREAD_NAME = "distmeta-prefetch"


def prefetches(mode: str, device: torch.device) -> bool:
    """Whether `train.prefetch` = `mode` draws batches ahead on `device` (auto: on a GPU only)."""
    if mode == "auto":
        return device.type == "cuda"
    return mode == "on"


@dataclass(frozen=True)
class _Drawn:
    """A batch on the device, and (on a GPU) the event its copy there records on the copy stream."""

    batch: TaskBatch
    copied: torch.cuda.Event | None = None


class BatchPrefetcher:
    """The batch of each step, drawn a step ahead in one background thread.

    `sample(step)`: the step's tasks (this rank's share) on the CPU. `end_step`: the step after
    the last one run; nothing is drawn for it. Use it as a context manager, so that the thread
    stops when training ends or fails.
    """

    def __init__(self, sample: Callable[[int], TaskBatch], device: torch.device, end_step: int):
        self.sample = sample
        self.device = device
        self.end_step = end_step
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_NAME)
        self._pending: tuple[int, Future[_Drawn]] | None = None
        self._copy_stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def batch(self, step: int) -> TaskBatch:
        """Step `step`'s batch on the device (the one drawn ahead when it was for this step),
        then start drawing the next step's."""
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] == step:
            batch = self._hand_over(pending[1].result())  # the thread's error, if any, raised here
        else:
            self._discard(pending)
            batch = self.sample(step).to(self.device)
        if step + 1 < self.end_step:
            self._pending = (step + 1, self._executor.submit(self._draw, step + 1))
        return batch

    def close(self) -> None:
        """Drop the batch drawn ahead (waiting for its drawing to end) and stop the thread."""
        self._discard(self._pending)
        self._pending = None
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> BatchPrefetcher:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def _draw(self, step: int) -> _Drawn:
        batch = self.sample(step)
        if self._copy_stream is None:
            return _Drawn(batch.to(self.device))
        # a stream of its own, so that the copy overlaps the step's kernels; pinned memory,
        # so that it is a DMA the thread need not wait for
        with torch.cuda.stream(self._copy_stream):
            support_x, support_y, query_x, query_y = (t.pin_memory() for t in batch.tensors())
            pinned = TaskBatch(support_x, support_y, query_x, query_y, seed=batch.seed, modes=batch.modes)
            moved = pinned.to(self.device)  # non_blocking
            copied = torch.cuda.Event()
            copied.record(self._copy_stream)
        return _Drawn(moved, copied)

    def _hand_over(self, drawn: _Drawn) -> TaskBatch:
        if drawn.copied is None:
            return drawn.batch
        stream = torch.cuda.current_stream(self.device)
        stream.wait_event(drawn.copied)  # the step's kernels start after the copy
        for tensor in drawn.batch.tensors():
            # allocated on the copy stream, used on this one: not reused before this one is done
            tensor.record_stream(stream)
        return drawn.batch

    @staticmethod
    def _discard(pending: tuple[int, Future[_Drawn]] | None) -> None:
        if pending is None:
            return
        future = pending[1]
        if not future.cancel():
            future.exception()  # waits for the drawing; an error of a batch no step uses is dropped
