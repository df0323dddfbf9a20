"""What every task distribution provides, and how task seeds are derived."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from distmeta.tasks.batch import TaskBatch

SPLITS = ("train", "val", "test")


class TaskDistribution(Protocol):
    """Samples batches of tasks; the same seed always gives the same batch.

    A seed keys a stream of tasks (`distmeta.tasks.streams`): `sample(n, seed, first)` is tasks
    first .. first + n - 1 of it, the same tasks whichever share of the stream is asked for.
    """

    is_classification: bool
    """True for N-way classification (labels), False for regression (targets)."""
    output_size: int
    """Model outputs per example: ways for classification, 1 for regression."""

    def sample(self, num_tasks: int, seed: int, first: int = 0) -> TaskBatch:
        """Tasks first .. first + num_tasks - 1 of the stream of `seed` (no global random state)."""
        ...


def derived_seed(*words: int) -> int:
    """A non-negative 63-bit seed from `words`, with numpy's SeedSequence: nearby words give
    unrelated streams, and other words (or another number of them) another stream."""
    return int(np.random.SeedSequence(list(words)).generate_state(1, np.uint64)[0] >> np.uint64(1))


def meta_batch_seed(run_seed: int, split: str, step: int) -> int:
    """The seed of the meta-batch of `step` in `split`: the key of its tasks' stream.

    Derived with numpy's SeedSequence, so that nearby steps and runs give unrelated streams.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return derived_seed(run_seed, SPLITS.index(split), step)


def task_seed(run_seed: int, split: str, step: int, index: int) -> int:
    """The seed of task `index` of the meta-batch of `step` in `split`.

    For families that draw a task from a seed of its own (the optimisees); the task
    distributions draw a meta-batch's tasks from one stream (`meta_batch_seed`). Derived
    with numpy's SeedSequence, so that nearby numbers give unrelated streams.
    """
    return derived_seed(run_seed, SPLITS.index(split), step, index)


def sample_tasks(distribution: TaskDistribution, run_seed: int, split: str, step: int, indices: range) -> TaskBatch:
    """Tasks `indices` of the meta-batch of `step`: a worker's share, or all of it.

    The batch's `seed` is the meta-batch's (`meta_batch_seed`): with the indices it names the tasks.
    """
    if len(indices) == 0 or indices.step != 1:
        raise ValueError(f"sample_tasks needs a non-empty range of consecutive task indices, got {indices}")
    seed = meta_batch_seed(run_seed, split, step)
    return distribution.sample(len(indices), seed, indices.start)
