"""How the tasks of a batch run: vectorised with `torch.func.vmap`, or one by one.

Both strategies call the same per-task functions of the algorithm, so they give
the same numbers (to float rounding); they differ only in speed and memory.
Measured on a 2-core CPU (benchmarks/engine_speed.py): for the sinusoid MLP
vmap is several times faster than the loop; for Conv4 the loop is faster and
needs a fraction of the memory, because vmap turns every convolution into a
grouped one over per-task weights and its batch norm needs basic ops.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import vmap

from distmeta.algorithms import MetaAlgorithm, Params
from distmeta.tasks import TaskBatch

STRATEGIES = ("vmap", "loop")


@dataclass(frozen=True)
class BatchGradient:
    """The meta-gradient of a batch of tasks, summed over tasks, and per-task metrics."""

    grad_sum: Params
    losses: torch.Tensor
    scores: torch.Tensor

    @property
    def num_tasks(self) -> int:
        return self.losses.shape[0]


def resolve_vectorize(vectorize: str, model_name: str, device: torch.device) -> tuple[str, str]:
    """The strategy to use, and why, for `vectorize` in {auto, vmap, loop}."""
    if vectorize != "auto":
        return vectorize, "set in the config"
    if device.type == "cuda":
        return "vmap", "auto: on a GPU one vectorised batch beats many small kernels"
    if model_name == "mlp":
        return "vmap", "auto: MLP on CPU, vmap measured several times faster than the loop"
    return "loop", "auto: conv model on CPU, the loop measured faster and lighter than vmap"


def batch_meta_gradient(algorithm: MetaAlgorithm, meta_params: Params, batch: TaskBatch, strategy: str) -> BatchGradient:
    """Meta-gradients of every task of `batch`, summed, with each task's query loss and score."""
    if strategy == "vmap":
        per_task = vmap(algorithm.task_meta_gradient, in_dims=(None, 0, 0, 0, 0))
        grads, losses, scores = per_task(meta_params, *batch.tensors())
        return BatchGradient({name: g.sum(0) for name, g in grads.items()}, losses, scores)
    if strategy != "loop":
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    grad_sum = {name: torch.zeros_like(value) for name, value in meta_params.items()}
    losses, scores = [], []
    for task in range(len(batch)):
        grads, loss, score = algorithm.task_meta_gradient(meta_params, *_one_task(batch, task))
        for name, g in grads.items():
            grad_sum[name] += g
        losses.append(loss)
        scores.append(score)
    return BatchGradient(grad_sum, torch.stack(losses), torch.stack(scores))


def batch_evaluation(
    algorithm: MetaAlgorithm, meta_params: Params, batch: TaskBatch, steps: int, strategy: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each task's query (loss, score) after `steps` inner steps; no meta-gradient."""
    if strategy == "vmap":
        per_task = vmap(algorithm.task_evaluation, in_dims=(None, 0, 0, 0, 0, None))
        return per_task(meta_params, *batch.tensors(), steps)
    results = [algorithm.task_evaluation(meta_params, *_one_task(batch, i), steps) for i in range(len(batch))]
    losses, scores = zip(*results)
    return torch.stack(losses), torch.stack(scores)


def _one_task(batch: TaskBatch, index: int) -> tuple[torch.Tensor, ...]:
    return tuple(t[index] for t in batch.tensors())
