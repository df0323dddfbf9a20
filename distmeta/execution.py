"""How the tasks of a batch run: vectorised with `torch.func.vmap`, or one by one.

Both strategies call the same per-task functions of the algorithm (its estimator's
`MetaGradient` of a task, its evaluation), so they give the same numbers (to float
rounding); they differ only in speed and memory.

- `vmap` runs every task at once; torch.func differentiates.
- `loop` runs task after task with plain torch.autograd. When torch has several
  threads, the tasks are shared among that many Python threads that each run
  their ops single-threaded: small per-task ops keep one core busy far better
  than they split over two (ops release the GIL, and torch.autograd, unlike
  torch.func, is thread-safe).

Measured on a 2-core CPU (benchmarks/engine_speed.py): for the sinusoid MLP
vmap is several times faster than the loop; for Conv4 the threaded loop is the
faster and needs a fraction of vmap's memory.

On a GPU the loop runs in the calling thread: the tasks' kernels queue on one
CUDA stream whatever thread launches them, so threads would only contend for the
GIL (and each would need its own copy of the model on the GPU). vmap's
`chunk_size` (`train.vmap_chunk_size`) bounds its memory: that many tasks at once.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch.func import vmap

from distmeta.algorithms import MetaAlgorithm, Params
from distmeta.determinism import refusals_named
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


def batch_meta_gradient(
    algorithm: MetaAlgorithm, meta_params: Params, batch: TaskBatch, strategy: str, chunk_size: int | None = None
) -> BatchGradient:
    """Meta-gradients of every task of `batch`, summed, with each task's query loss and score.

    `chunk_size`: tasks vmap runs at once (None: all); the loop ignores it.
    """
    with refusals_named():
        return _batch_meta_gradient(algorithm, meta_params, batch, strategy, chunk_size)


def _batch_meta_gradient(
    algorithm: MetaAlgorithm, meta_params: Params, batch: TaskBatch, strategy: str, chunk_size: int | None
) -> BatchGradient:
    if strategy == "vmap":
        per_task = vmap(algorithm.task_estimate, in_dims=(None, 0, 0, 0, 0), chunk_size=chunk_size)
        estimate = per_task(meta_params, *batch.tensors())
        grad_sum = {name: g.sum(0) for name, g in estimate.grads.items()}
        return BatchGradient(grad_sum, estimate.mean_loss, estimate.info["score"])
    _check_strategy(strategy)
    parts = _in_threads(algorithm, lambda looped, chunk: _loop_meta_gradient(looped, meta_params, chunk), batch)
    grad_sum = {name: sum(part.grad_sum[name] for part in parts) for name in meta_params}
    return BatchGradient(grad_sum, torch.cat([p.losses for p in parts]), torch.cat([p.scores for p in parts]))


def batch_evaluation(
    algorithm: MetaAlgorithm,
    meta_params: Params,
    batch: TaskBatch,
    steps: int,
    strategy: str,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each task's query (loss, score) after `steps` inner steps; no meta-gradient."""
    with refusals_named():
        return _batch_evaluation(algorithm, meta_params, batch, steps, strategy, chunk_size)


def _batch_evaluation(
    algorithm: MetaAlgorithm, meta_params: Params, batch: TaskBatch, steps: int, strategy: str, chunk_size: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    if strategy == "vmap":
        per_task = vmap(algorithm.task_evaluation, in_dims=(None, 0, 0, 0, 0, None), chunk_size=chunk_size)
        return per_task(meta_params, *batch.tensors(), steps)
    _check_strategy(strategy)

    def evaluate_chunk(looped: MetaAlgorithm, chunk: TaskBatch):
        results = [looped.task_evaluation(meta_params, *_one_task(chunk, i), steps) for i in range(len(chunk))]
        return tuple(torch.stack(column) for column in zip(*results))

    parts = _in_threads(algorithm, evaluate_chunk, batch)
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def batch_query_losses(
    algorithm: MetaAlgorithm, meta_params: Params, batch: TaskBatch, strategy: str, chunk_size: int | None = None
) -> torch.Tensor:
    """Each task's training-time query loss (`query_loss`: adapt, then predict), without the
    meta-gradient: the forward half of `batch_meta_gradient`, run the same way (a benchmark
    times it to split the meta-gradient's time into inner loop and outer backward)."""
    if strategy == "vmap":
        per_task = vmap(algorithm.query_loss, in_dims=(None, 0, 0, 0, 0), chunk_size=chunk_size)
        losses, _ = per_task(meta_params, *batch.tensors())
        return losses.detach()
    _check_strategy(strategy)

    def chunk_losses(looped: MetaAlgorithm, chunk: TaskBatch) -> torch.Tensor:
        return torch.stack(
            [looped.query_loss(meta_params, *_one_task(chunk, i))[0].detach() for i in range(len(chunk))]
        )

    return torch.cat(_in_threads(algorithm, chunk_losses, batch))


def _loop_meta_gradient(algorithm: MetaAlgorithm, meta_params: Params, batch: TaskBatch) -> BatchGradient:
    grad_sum = {name: torch.zeros_like(value) for name, value in meta_params.items()}
    losses, scores = [], []
    for task in range(len(batch)):
        estimate = algorithm.task_estimate(meta_params, *_one_task(batch, task))
        for name, g in estimate.grads.items():
            grad_sum[name] += g
        losses.append(estimate.mean_loss)
        scores.append(estimate.info["score"])
    return BatchGradient(grad_sum, torch.stack(losses), torch.stack(scores))


def _check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")


# ---------------------------------------------------------------- threads for the loop

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _thread_pool(threads: int) -> ThreadPoolExecutor:
    """A pool of `threads` threads, each running torch ops single-threaded (made once)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers != threads:
            if _pool is not None:
                _pool.shutdown(wait=True)
            # set_num_threads in a thread sets that thread's own OpenMP team size
            _pool = ThreadPoolExecutor(
                threads, thread_name_prefix="distmeta-task", initializer=torch.set_num_threads, initargs=(1,)
            )
        return _pool


def _in_threads(algorithm: MetaAlgorithm, work, batch: TaskBatch) -> list:
    """`work(looped, chunk)` on contiguous chunks of the batch, one per torch thread, results in
    task order; `looped` is `algorithm` differentiating with torch.autograd, with a model of its
    own per thread (and no copy of the model when the batch runs in this thread alone).

    The chunks depend only on the thread count and batch size, so results are
    reproducible on the same machine. A batch on a GPU runs in this thread, in one chunk.
    """
    threads = min(torch.get_num_threads(), len(batch))
    on_gpu = batch.support_x.device.type != "cpu"
    if threads <= 1 or on_gpu or threading.current_thread().name.startswith("distmeta-task"):
        return [work(algorithm.using_autograd(own_model=False), batch)]
    bounds = [len(batch) * i // threads for i in range(threads + 1)]
    chunks = [batch.select(bounds[i], bounds[i + 1]) for i in range(threads)]
    return list(_thread_pool(threads).map(lambda chunk: work(algorithm.using_autograd(), chunk), chunks))


def _one_task(batch: TaskBatch, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    support_x, support_y, query_x, query_y = batch.tensors()
    return support_x[index], support_y[index], query_x[index], query_y[index]
