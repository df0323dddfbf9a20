"""What every Ray Train worker of a learned-optimiser run runs (`train`, and `distmeta bench`).

Each worker owns the persistent unrolls of its task indices (`share_of_meta_batch`), moves
them on by a truncation per meta-step, and joins the one all-reduce of the step
(`distmeta.learned_optimizer_runs.training.rank_meta_step`). Every rank takes its share of
each validation's unrolls and of the final meta-test's (`runtime.shared_evaluation`). Rank 0
is the learner of record: it logs and writes checkpoints, which hold every rank's unrolls by
task index (gathered at each checkpoint), so a restarted group (of any size) continues them.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import torch

from distmeta.algorithms import Params
from distmeta.benchmarking.machine import cpu_model
from distmeta.benchmarking.result_box import send_times
from distmeta.benchmarking.timing import PhaseTimer
from distmeta.config import from_dict
from distmeta.errors import DistmetaError
from distmeta.evaluation import EvalResult
from distmeta.learned_optimizer_runs.training import (
    UNIT,
    OptimizerRun,
    RunState,
    build_run,
    checkpoint_payload,
    initial_state,
    nothing_conditioned,
    rank_meta_step,
    summarise_losses,
    unroll_losses,
    unrolls_line,
)
from distmeta.runtime.agreement import RankFailure
from distmeta.runtime.collective import barrier, broadcast_parameters, from_rank_zero, share_of_meta_batch
from distmeta.runtime.session import owner_check
from distmeta.runtime.shared_evaluation import gathered_shares
from distmeta.runtime.storage import META_TEST_FILE, WORKERS_FILE
from distmeta.runtime.worker import (
    describe_workers,
    report_with_checkpoint,
    restored_checkpoint,
    start_worker,
    storage_writes,
)
from distmeta.runtime.worker_errors import send_error
from distmeta.storage import Location, location
from distmeta.training.checkpoint import save_checkpoint
from distmeta.training.progress import ProgressLog
from distmeta.training.trainer import train_loop


def report_checkpoint(
    run: OptimizerRun, rank: int, failure: RankFailure, run_dir: Location, still_owner: Callable[[], None]
):
    """A `train_loop` checkpoint function: every rank hands in its unrolls and reports, rank 0
    with the checkpoint (once `still_owner` found that no other session took the run over),
    as in the few-shot worker (`runtime.worker.report_with_checkpoint`)."""

    def save(state: RunState) -> None:
        extra = checkpoint_payload(run, state)  # a collective: every rank, every checkpoint
        metrics = {"step": state.step, **(state.history[-1] if state.history else {})}

        def write(folder: str) -> None:
            still_owner()
            save_checkpoint(
                folder, state.step, run.config, state.meta_params, state.optimizer.state_dict(), metrics, extra
            )

        report_with_checkpoint(state.step, metrics, rank, failure, run_dir, write)

    return save


def shared_unroll_losses(
    run: OptimizerRun, meta_params: Params, split: str, rank: int, world_size: int, failure: RankFailure
) -> EvalResult:
    """The `eval_tasks` unrolls of `split`, shared among the ranks and gathered on every rank:
    the same tasks, so the same numbers, as one process takes (`unroll_evaluation`)."""
    section = run.config.algorithm.learned_optimizer
    parts = gathered_shares(
        lambda share: unroll_losses(run, meta_params, split, share), section.eval_tasks, rank, world_size, failure
    )
    return summarise_losses(torch.cat(parts), section.unroll_length, split)


def shared_unroll_validation(
    rank: int, world_size: int, failure: RankFailure
) -> Callable[[OptimizerRun, Params], EvalResult]:
    """A `train_loop` validation: the `eval_tasks` validation unrolls shared among the ranks."""

    def validate(run: OptimizerRun, meta_params: Params) -> EvalResult:
        return shared_unroll_losses(run, meta_params, "val", rank, world_size, failure)

    return validate


def train_worker(loop_config: dict) -> None:
    """The per-worker function of a learned-optimiser run's TorchTrainer.

    A user error on any rank (rank 0 failing to log or checkpoint, a run another driver took
    over) ends every rank together (`RankFailure`) and reaches the driver through the error box."""
    rank, world_size = start_worker(loop_config)
    run_dir = location(loop_config["run_dir"])  # a local path, or a bucket URI with its endpoint
    still_owner = owner_check(run_dir, loop_config.get("session"))
    failure = RankFailure(rank)
    try:
        with failure.catching():  # this rank's settings, and rank 0's checkpoint
            config = from_dict(loop_config["config"])
            run = build_run(config)
            restored = restored_checkpoint(run_dir) if rank == 0 else None
        failure.agree()
        payload = from_rank_zero(restored)
        indices = share_of_meta_batch(config.train.meta_batch_size, rank, world_size)
        state = initial_state(run, indices, payload)
        broadcast_parameters(state.meta_params)
        workers = describe_workers(rank, "cpu", "loop")  # learned optimisers train on the CPU
        progress = None
        if rank == 0:
            with failure.catching(), storage_writes(run_dir, WORKERS_FILE):
                still_owner()
                run_dir.mkdir()
                (run_dir / WORKERS_FILE).write_text(json.dumps(workers, indent=2))
                progress = ProgressLog(run_dir, config.train.steps, config.metric, unit=UNIT, before_write=still_owner)
                if payload is not None:
                    progress.record(
                        {"event": "resumed", "from_step": payload["step"], "note": unrolls_line(config, payload)}
                    )
        train_loop(
            run,
            state,
            progress,
            lambda run, state: rank_meta_step(run, state, rank, world_size, failure=failure),
            report_checkpoint(run, rank, failure, run_dir, still_owner),
            leader_failure=failure,
            leader_decision=from_rank_zero,
            validation=shared_unroll_validation(rank, world_size, failure),
            conditioning=nothing_conditioned,
        )
        failure.agree()  # what rank 0 did after the last checkpoint
        if loop_config.get("final_eval"):
            test = shared_unroll_losses(run, state.meta_params, "test", rank, world_size, failure)
            if rank == 0:  # after the last collective: no rank waits for this one
                still_owner()
                with storage_writes(run_dir, META_TEST_FILE):
                    (run_dir / META_TEST_FILE).write_text(json.dumps(test.to_dict(), indent=2))
    except DistmetaError as error:  # every rank at once: a non-finite meta-gradient is all-reduced first
        send_error(loop_config["errors"], error)


def bench_worker(loop_config: dict) -> None:
    """`distmeta bench` for a learned optimiser: warm-up, then timed meta-steps, rank 0's
    gathered times sent to the driver's box (see `distmeta.benchmarking.scaling`)."""
    rank, world_size = start_worker(loop_config)
    box = loop_config["box"]
    failure = RankFailure(rank)
    try:
        with failure.catching():
            config = from_dict(loop_config["config"])
            run = build_run(config)
        failure.agree()
        state = initial_state(run, share_of_meta_batch(config.train.meta_batch_size, rank, world_size))
        workers = describe_workers(rank, "cpu", "loop")  # learned optimisers train on the CPU
        for _ in range(loop_config["warmup"]):
            rank_meta_step(run, state, rank, world_size, failure=failure)
        barrier()
        times = [timed_step(run, state, rank, world_size, failure) for _ in range(loop_config["steps"])]
        send_times(box, rank, workers, times, cpu_model())
    except DistmetaError as error:
        send_error(loop_config["errors"], error)


def timed_step(
    run: OptimizerRun, state: RunState, rank: int, world_size: int, failure: RankFailure
) -> dict[str, float]:
    """One meta-step, phase by phase, in the bench's `StepTimes` fields: the estimate (unroll
    forward and meta-backward together, which cannot be timed apart) is `inner_loop`;
    nothing is sampled and there is no separate outer backward."""
    timer = PhaseTimer(torch.device("cpu"))
    with timer.phase("step"):
        rank_meta_step(run, state, rank, world_size, timer, failure)
    seconds = timer.seconds
    return {
        "sampling": 0.0,
        "inner_loop": seconds["meta_gradient"],
        "outer_backward": 0.0,
        "sync_wait": seconds["sync_wait"],
        "all_reduce": seconds["all_reduce"],
        "optimizer": seconds["optimizer"],
        "step": seconds["step"],
    }
