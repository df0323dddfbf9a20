"""Optimisee families: the problems a learned optimiser is meta-trained and tested on.

A family draws tasks from seeds, as the task distributions do; a task is a model's starting
parameters and the tensors that define its loss (a quadratic's matrix, a data order). Both
are plain tensors, so that a task's whole state can live in an unroll's state, be carried
from one meta-step to the next, saved, and run under `torch.func.vmap`.

Meta-train and meta-test tasks come from different seed streams (`optimisee_seed` with the
split "train" or "test"); a family built on data also holds out the data of its split.
"""

from __future__ import annotations

from typing import Protocol

import torch

from distmeta.tasks.base import task_seed

Params = dict[str, torch.Tensor]
TaskData = dict[str, torch.Tensor]


class OptimiseeFamily(Protocol):
    """Seeded optimisee tasks: starting parameters, and a loss at each training step."""

    split: str
    """"train" (meta-training) or "test" (held-out tasks)."""

    def init(self, seed: int) -> tuple[Params, TaskData]:
        """Task `seed`: its starting parameters and its data, drawn from `seed` alone."""

    def loss(self, params: Params, task: TaskData, step: torch.Tensor) -> torch.Tensor:
        """The training loss at `step` (a 0-d integer tensor; a minibatch family picks that
        step's minibatch from it), a scalar."""

    def full_loss(self, params: Params, task: TaskData) -> torch.Tensor:
        """The loss on all of the task's data: what an evaluation reports."""


def check_split(split: str) -> None:
    """Refuse a split other than the optimisees' two: "train" (meta-training) and "test" (held out)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def optimisee_seed(run_seed: int, split: str, step: int, index: int) -> int:
    """The seed of optimisee `index` drawn at meta-step `step` of `split` ("train" or "test")."""
    check_split(split)
    return task_seed(run_seed, split, step, index)
