"""Textbook per-task MAML: one task at a time, `functional_call` and `torch.autograd.grad`.

Kept deliberately plain, with no shared code from `distmeta.algorithms`: the
tests check the engine against it, and benchmarks/engine_speed.py times the
engine against it as "the per-task loop" a user would write by hand.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from distmeta.tasks import TaskBatch


def maml_task_gradient(
    model: nn.Module,
    params: dict,
    task: tuple,
    inner_lr: float,
    inner_steps: int,
    first_order: bool,
    classification: bool,
) -> dict:
    """MAML meta-gradient of one task (support_x, support_y, query_x, query_y)."""
    loss_fn = F.cross_entropy if classification else F.mse_loss
    leaves = {name: value.detach().requires_grad_(True) for name, value in params.items()}
    support_x, support_y, query_x, query_y = task
    fast = dict(leaves)
    for _ in range(inner_steps):
        loss = loss_fn(functional_call(model, fast, (support_x,)), support_y)
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order)
        fast = {name: value - inner_lr * g for (name, value), g in zip(fast.items(), grads)}
    query_loss = loss_fn(functional_call(model, fast, (query_x,)), query_y)
    return dict(zip(leaves, torch.autograd.grad(query_loss, list(leaves.values()))))


def maml_batch_gradient(
    model: nn.Module,
    params: dict,
    batch: TaskBatch,
    inner_lr: float,
    inner_steps: int,
    first_order: bool,
    classification: bool,
) -> dict:
    """The summed MAML meta-gradient of a batch, task after task."""
    total = {name: torch.zeros_like(value) for name, value in params.items()}
    for index in range(len(batch)):
        task = tuple(t[index] for t in batch.tensors())
        grads = maml_task_gradient(model, params, task, inner_lr, inner_steps, first_order, classification)
        for name in total:
            total[name] += grads[name]
    return total
