"""Where the time of one meta-step goes: the engine's own step, with a clock on each phase.

Pure torch (no Ray), so that it runs, and is tested, in a single process too. The
step is the one a Ray worker takes in training (`distmeta.runtime.step.rank_meta_step`),
given a clock; the clock never changes the math.

Phases of a step, each timed with `time.perf_counter` (CUDA synchronised at every
boundary when on a GPU, so that queued kernels are counted in their own phase):

- `sampling`: `meta_batch`, this rank's share of the step's tasks, moved to the device; where
  `train.prefetch` draws them a step ahead, the wait for them: what is left of sampling (on a
  GPU a phase's synchronisation also waits for a copy of the next step's tasks under way);
- `meta_gradient`: `compute_meta_gradient`, split in two below;
- `sync_wait`: a `dist.barrier()` before the all-reduce: this rank waiting for the slowest;
- `all_reduce`: `all_reduce_sum`, the collective itself (flattening included);
- `optimizer`: `check_finite`, `apply_meta_gradient` and the loss read back, as in the engine.

The engine computes the inner loop and the outer backward in one call
(`torch.func.grad` of the adapted query loss, vmapped or looped over tasks), so
they cannot be timed apart inside it. After the step, outside its clock, the same
tasks go once more through a forward-only pass (`batch_query_losses`: adapt, then
predict, with the experiment's strategy) from the meta-parameters the step started
from: that is `inner_loop`, and `outer_backward` = meta-gradient - inner_loop
(clipped at 0). The extra pass is excluded from the step time and from throughput;
a barrier after it lines the ranks up again so that it does not show as sync_wait.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch

from distmeta.algorithms import Params
from distmeta.devices import synchronize
from distmeta.execution import batch_query_losses
from distmeta.experiment import Experiment
from distmeta.runtime.agreement import RankFailure
from distmeta.runtime.collective import barrier, share_of_meta_batch
from distmeta.runtime.step import rank_meta_step
from distmeta.training.prefetch import BatchPrefetcher
from distmeta.training.trainer import TrainState, prefetched_tasks

PHASES = ("sampling", "inner_loop", "outer_backward", "sync_wait", "all_reduce", "optimizer")
"""The phases a step's time is split into, in the order they run; they add up to the step."""


@dataclass(frozen=True)
class StepTimes:
    """Seconds one rank spent in each phase of one meta-step, and the step's wall clock."""

    sampling: float
    inner_loop: float
    outer_backward: float
    sync_wait: float
    all_reduce: float
    optimizer: float
    step: float
    """Wall clock of the step: sampling + meta-gradient + sync_wait + all_reduce + optimizer."""

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


class PhaseTimer:
    """A `StepClock` that adds up the seconds spent in named phases, with CUDA synchronised
    at each boundary on a GPU, and waits for the slowest rank where the step lets it."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = {}

    def synchronize(self) -> None:
        # CUDA kernels run asynchronously: without this a phase would end when its
        # kernels are queued, and their run time would land in a later phase.
        synchronize(self.device)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.synchronize()
        started = time.perf_counter()
        try:
            yield
        finally:
            self.synchronize()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def wait_for_slowest_rank(self) -> None:
        # without it the all-reduce would also count the wait for the slowest rank
        barrier()


def timed_meta_step(
    experiment: Experiment,
    state: TrainState,
    rank: int = 0,
    world_size: int = 1,
    failure: RankFailure | None = None,
    batches: BatchPrefetcher | None = None,
) -> StepTimes:
    """One meta-step of this rank, the one training takes, timed phase by phase."""
    start_params = _snapshot(state.meta_params)  # for the forward-only pass; outside the step's clock
    timer = PhaseTimer(experiment.device)
    with timer.phase("step"):
        _, batch = rank_meta_step(experiment, state, rank, world_size, timer, failure, batches)
    with timer.phase("inner_loop"):
        batch_query_losses(experiment.algorithm, start_params, batch, experiment.strategy, experiment.vmap_chunk_size)
    barrier()  # every rank ran the extra pass: start the next step together
    seconds = timer.seconds
    return StepTimes(
        sampling=seconds["sampling"],
        inner_loop=min(seconds["inner_loop"], seconds["meta_gradient"]),
        outer_backward=max(seconds["meta_gradient"] - seconds["inner_loop"], 0.0),
        sync_wait=seconds["sync_wait"],
        all_reduce=seconds["all_reduce"],
        optimizer=seconds["optimizer"],
        step=seconds["step"],
    )


def timed_steps(
    experiment: Experiment,
    state: TrainState,
    rank: int,
    world_size: int,
    warmup: int,
    steps: int,
    failure: RankFailure | None = None,
) -> list[StepTimes]:
    """`warmup` untimed meta-steps (allocator, thread pools, first-call costs), then `steps` timed ones.

    A user error on one rank stops every rank at the step's all-reduce (see `runtime.agreement`).
    Tasks are drawn a step ahead where `train.prefetch` says so, as in training."""
    share = share_of_meta_batch(experiment.config.train.meta_batch_size, rank, world_size)
    with prefetched_tasks(experiment, share, state.step + warmup + steps) as batches:
        for _ in range(warmup):
            timed_meta_step(experiment, state, rank, world_size, failure, batches)
        barrier()
        return [timed_meta_step(experiment, state, rank, world_size, failure, batches) for _ in range(steps)]


def _snapshot(params: Params) -> Params:
    # the optimiser updates the meta-parameters in place
    return {name: value.detach().clone() for name, value in params.items()}
