"""What every task distribution provides, and how task seeds are derived."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from distmeta.tasks.batch import TaskBatch

SPLITS = ("train", "val", "test")


class TaskDistribution(Protocol):
    """Samples batches of tasks; the same seed always gives the same batch."""

    is_classification: bool
    """True for N-way classification (labels), False for regression (targets)."""
    output_size: int
    """Model outputs per example: ways for classification, 1 for regression."""

    def sample(self, num_tasks: int, seed: int) -> TaskBatch:
        """`num_tasks` tasks drawn from `seed` alone (no global random state)."""
        ...


def task_seed(run_seed: int, split: str, step: int, index: int) -> int:
    """The seed of task `index` of the meta-batch of `step` in `split`.

    Each task has its own seed, so a meta-batch is the same set of tasks however
    it is shared among workers. Derived with numpy's SeedSequence, so that
    nearby numbers give unrelated streams.
    """
    words = [run_seed, SPLITS.index(split), step, index]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> np.uint64(1))


def sample_tasks(distribution: TaskDistribution, run_seed: int, split: str, step: int, indices: range) -> TaskBatch:
    """Tasks `indices` of the meta-batch of `step`: a worker's share, or all of it.

    The batch's `seed` is that of its first task; task i's is task_seed(run_seed, split, step, i).
    """
    seeds = [task_seed(run_seed, split, step, index) for index in indices]
    if not seeds:
        raise ValueError("sample_tasks needs at least one task index")
    return TaskBatch.concat([distribution.sample(1, seed) for seed in seeds])
