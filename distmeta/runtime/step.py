"""One rank's meta-step: its share of the tasks, the one all-reduce, the shared update.

Training (`worker.distributed_meta_step`) and the throughput bench
(`distmeta.benchmarking.timing`) both take their steps here, so the step the bench
times is the step training takes. The bench passes a clock that times each phase;
training passes none. Pure torch (no Ray): it runs, and is tested, in one process.
"""

from __future__ import annotations

from contextlib import AbstractContextManager as ContextManager
from contextlib import nullcontext
from typing import Protocol

import torch

from distmeta.experiment import Experiment
from distmeta.runtime.agreement import RankFailure
from distmeta.runtime.collective import all_reduce_sum, share_of_meta_batch
from distmeta.tasks import TaskBatch, meta_batch_seed
from distmeta.training.prefetch import BatchPrefetcher
from distmeta.training.trainer import (
    StepMetrics,
    TrainState,
    apply_meta_gradient,
    check_finite,
    compute_meta_gradient,
    meta_batch,
)


class StepClock(Protocol):
    """What a meta-step tells a clock: the phase it enters, and where ranks may wait for each other."""

    def phase(self, name: str) -> ContextManager[None]: ...

    def wait_for_slowest_rank(self) -> None: ...


class NoClock:
    """Training's clock: times nothing and adds no barrier (the all-reduce waits anyway)."""

    def phase(self, name: str) -> ContextManager[None]:
        return nullcontext()

    def wait_for_slowest_rank(self) -> None:
        return None


def rank_meta_step(
    experiment: Experiment,
    state: TrainState,
    rank: int,
    world_size: int,
    clock: StepClock | None = None,
    failure: RankFailure | None = None,
    batches: BatchPrefetcher | None = None,
) -> tuple[StepMetrics, TaskBatch]:
    """Sample this rank's tasks, sum their meta-gradients, all-reduce, apply the update.

    Phases, in order: `sampling`, `meta_gradient`, `sync_wait`, `all_reduce`, `optimizer`.
    Returns the step's metrics (means over the whole meta-batch) and this rank's tasks.
    With `batches`, the tasks are the ones it drew ahead for this step (the same tasks), and
    `sampling` is the wait for them: what is left of sampling once it overlaps the compute.
    A user error on this rank (in this step, or kept in `failure` since the ranks last
    met) is not raised here at once: the all-reduce carries a flag saying so, and then
    every rank raises it together (see `runtime.agreement`).
    """
    clock = clock or NoClock()
    failure = failure or RankFailure(rank)
    config = experiment.config
    tasks = config.train.meta_batch_size
    batch, result = None, None
    with failure.catching():
        if not failure.failed:  # a rank that failed since the ranks last met only says so
            with clock.phase("sampling"):
                if batches is not None:
                    batch = batches.batch(state.step)
                else:
                    batch = meta_batch(experiment, state.step, share_of_meta_batch(tasks, rank, world_size))
            with clock.phase("meta_gradient"):
                result = compute_meta_gradient(experiment, state.meta_params, batch)
    with clock.phase("sync_wait"):
        clock.wait_for_slowest_rank()
    with clock.phase("all_reduce"):
        if result is None:  # failed: it adds nothing but its flag
            grad_sum = {name: torch.zeros_like(value) for name, value in state.meta_params.items()}
            sums = torch.tensor([0.0, 0.0, 1.0], device=experiment.device)
        else:
            grad_sum = result.grad_sum
            sums = torch.stack([result.losses.sum(), result.scores.sum(), torch.zeros_like(result.losses[0])])
        grad_total, totals, reduced = all_reduce_sum(grad_sum, sums)
    with clock.phase("optimizer"):
        if totals[2].item() > 0:
            failure.agree()  # raises, on every rank, the error of the lowest failing rank
        meta_loss = totals[0] / tasks
        # every rank holds the same reduced values, so every rank stops here together
        check_finite(state.step, meta_batch_seed(config.seed, "train", state.step), meta_loss, reduced)
        apply_meta_gradient(state, config.train, grad_total, tasks)
        # read back inside the clock: on a GPU this waits for the update to finish
        metrics = StepMetrics(meta_loss.item(), (totals[1] / tasks).item(), tasks)
    assert batch is not None  # a rank without its batch failed, and failure.agree() raised above
    return metrics, batch
