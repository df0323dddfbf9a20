"""What every Ray Train worker runs: the engine's meta-step on its share of the tasks.

Each worker samples tasks `share_of_meta_batch(...)` of every meta-batch (a task is
drawn at its index from its meta-batch's stream, keyed by run seed, split and step:
`tasks.sample_tasks`; so N workers see exactly the tasks one worker would), sums
their meta-gradients, joins the one all-reduce of the step, and applies the same
meta-optimiser step as every other rank. Rank 0 is the learner of record: it
logs and writes checkpoints.

A worker computes on the device `distmeta.devices.worker_device` gives it (its
GPU, or the CPU), starts from rank 0's meta-parameters (broadcast), and takes its
share of each validation and of the final meta-test (`runtime.shared_evaluation`),
which rank 0 writes down: the driver never computes on a device.

A user error (`DistmetaError`: bad data on one node, a storage that refuses a write,
a NaN) is not a crash for Ray Train to retry: the ranks agree on it before their next
collective (`runtime.agreement`), then each sends it to the driver's error box
(`runtime.worker_errors`) and ends cleanly; a storage failure is turned into a
`StorageError` naming the run folder (`storage_writes`).
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow
import ray.train
import ray.train.torch
import torch

from distmeta.config import Config, from_dict
from distmeta.devices import check_cuda_torch, worker_device
from distmeta.errors import DistmetaError, StorageError
from distmeta.evaluation import EvalResult
from distmeta.experiment import Experiment, build_experiment
from distmeta.host_memory import keep_freed_memory
from distmeta.runtime.agreement import RankFailure
from distmeta.runtime.collective import broadcast_parameters, from_rank_zero, gathered, share_of_meta_batch
from distmeta.runtime.session import owner_check
from distmeta.runtime.shared_evaluation import shared_conditioning, shared_evaluation, shared_validation
from distmeta.runtime.step import rank_meta_step
from distmeta.runtime.storage import META_TEST_FILE, WORKERS_FILE
from distmeta.runtime.worker_errors import send_error
from distmeta.storage import Location, location
from distmeta.training.checkpoint import load_checkpoint, newest_readable_checkpoint, save_checkpoint
from distmeta.training.knowledge_sample import record_step_sample
from distmeta.training.prefetch import BatchPrefetcher
from distmeta.training.progress import ProgressLog
from distmeta.training.trainer import StepMetrics, TrainState, initial_state, prefetched_tasks, train_loop


def distributed_meta_step(
    rank: int,
    world_size: int,
    failure: RankFailure,
    run_dir: Path | Location | None = None,
    batches: BatchPrefetcher | None = None,
):
    """A `train_loop` step function: this rank's tasks, one all-reduce, the shared update
    (which also tells every rank whether one failed: see `runtime.agreement`); with `run_dir`,
    this rank's part of the step's knowledge-base sample, as its own file (train.knowledge_every);
    with `batches`, this rank's tasks drawn a step ahead (train.prefetch)."""

    def step(experiment: Experiment, state: TrainState) -> StepMetrics:
        metrics, batch = rank_meta_step(experiment, state, rank, world_size, failure=failure, batches=batches)
        if run_dir is not None and batch is not None:
            share = share_of_meta_batch(experiment.config.train.meta_batch_size, rank, world_size)
            with failure.catching():  # an error here reaches every rank at the next all-reduce
                record_step_sample(
                    experiment, state.meta_params, state.step, batch, share, run_dir, f"train-rank{rank}"
                )
        return metrics

    return step


def report_checkpoint(
    experiment: Experiment, rank: int, failure: RankFailure, run_dir: Location, still_owner: Callable[[], None]
):
    """A `train_loop` checkpoint function: every rank reports, rank 0 with the checkpoint
    (once `still_owner` found that no other session took the run over: `runtime.session`)."""

    def save(state: TrainState) -> None:
        metrics = {"step": state.step, **(state.history[-1] if state.history else {})}

        def write(folder: str) -> None:
            still_owner()
            save_checkpoint(
                folder, state.step, experiment.config, state.meta_params, state.optimizer.state_dict(), metrics
            )

        report_with_checkpoint(state.step, metrics, rank, failure, run_dir, write)

    return save


def report_with_checkpoint(
    step: int, metrics: dict, rank: int, failure: RankFailure, run_dir: Location, write: Callable[[str], None]
) -> None:
    """Every rank reports `metrics` to Ray Train; rank 0 with the checkpoint `write` puts in a
    fresh folder (the few-shot and the learned-optimiser workers' checkpoints alike).

    Ray's report waits for every rank, so the ranks first agree that none failed (rank 0
    writing the checkpoint, or logging since the last step): a rank that raised alone would
    leave the others in the report until the collective's timeout. A failed upload to the
    storage is kept, and said at the next step's all-reduce or at the end."""
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = None
        if rank == 0:
            with failure.catching():
                write(folder)
                checkpoint = ray.train.Checkpoint.from_directory(folder)
        failure.agree()
        with failure.catching(), storage_writes(run_dir, f"the checkpoint of step {step}"):
            ray.train.report(metrics, checkpoint=checkpoint)


@contextmanager
def storage_writes(run_dir: Location, what: str) -> Iterator[None]:
    """Turn a write the run's storage refused (full, read-only, gone) into a `StorageError` naming it."""
    try:
        yield
    except (OSError, pyarrow.ArrowException) as error:
        raise StorageError(
            run_dir,
            f"{what} could not be written there ({error}); the checkpoints before it "
            f"are intact: the same command resumes from the newest once it can write",
        ) from None


def restored_checkpoint(run_dir: Location) -> dict | None:
    """The payload of the newest checkpoint of this run, if any.

    Ray Train hands a restarted group the latest checkpoint its controller
    registered, but the controller can miss a report made shortly before a worker
    died (it polls every few seconds), although the checkpoint itself was already
    persisted. So the run directory, which holds every persisted checkpoint, is
    searched first: a failure never costs more than the steps since the last
    checkpoint. Ray's own choice serves when the folder is not visible here.
    """
    persisted = newest_readable_checkpoint(run_dir)  # includes every checkpoint Ray registered
    if persisted is not None:
        return persisted
    registered = ray.train.get_checkpoint()
    if registered is None:
        return None
    with registered.as_directory() as folder:
        return load_checkpoint(folder)


def describe_workers(rank: int, device: str, inner_loops: str) -> list[dict]:
    """Every rank's node, host, device and inner-loop strategy, gathered on every rank."""
    here = {
        "rank": rank,
        "node": ray.get_runtime_context().get_node_id(),
        "host": socket.gethostname(),
        "device": device,
        "inner_loops": inner_loops,
    }
    return gathered(here)


def worker_experiment(config: Config, gpus_per_worker: int) -> Experiment:
    """This worker's experiment, on its device; a worker given GPUs that torch cannot use
    stops here with what to install (a user error, so it is not retried)."""
    if gpus_per_worker and config.train.device != "cpu":  # a worker told to use the CPU needs no CUDA
        check_cuda_torch()
    device = worker_device(config.train.device, ray.train.torch.get_device())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return build_experiment(config, device, check_data=False)


def final_meta_test(
    experiment: Experiment, state: TrainState, rank: int, world_size: int, failure: RankFailure
) -> EvalResult:
    """The meta-test of the trained meta-parameters, its tasks shared among the ranks and
    gathered (the same tasks, so the same numbers, as one process would take)."""
    tasks = experiment.config.eval.tasks
    return shared_evaluation(experiment, state.meta_params, "test", tasks, rank, world_size, failure)


def enter_command_dir(folder: str) -> None:
    """Work from the folder the command ran in, where this node has it.

    A config's relative paths (Omniglot roots, the cache folder) mean what they meant
    to the driver, which checked them: Ray starts workers elsewhere. A node without
    that folder keeps its own: in a submitted job, its copy of the job's working directory.
    """
    if Path(folder).is_dir():
        os.chdir(folder)


def start_worker(loop_config: dict) -> tuple[int, int]:
    """What every per-worker function (train, bench, learned optimisers) does first: work from
    the command's folder with the threads it was given; returns (rank, world size)."""
    enter_command_dir(loop_config["command_dir"])
    torch.set_num_threads(loop_config["threads_per_worker"])
    keep_freed_memory()
    context = ray.train.get_context()
    return context.get_world_rank(), context.get_world_size()


def train_worker(loop_config: dict) -> None:
    """The per-worker function of the TorchTrainer.

    A user error on any rank ends every rank together (`RankFailure`), and reaches the
    driver through the error box (`runtime.worker_errors`) rather than as a crash."""
    rank, world_size = start_worker(loop_config)
    run_dir = location(loop_config["run_dir"])  # a local path, or a bucket URI with its endpoint
    still_owner = owner_check(run_dir, loop_config.get("session"))
    failure = RankFailure(rank)
    try:
        with failure.catching():  # this rank's data, device, and rank 0's checkpoint
            config = from_dict(loop_config["config"])
            experiment = worker_experiment(config, loop_config.get("gpus_per_worker", 0))
            restored = restored_checkpoint(run_dir) if rank == 0 else None
        failure.agree()
        payload = from_rank_zero(restored)
        state = initial_state(experiment, payload)
        broadcast_parameters(state.meta_params)
        workers = describe_workers(rank, str(experiment.device), experiment.strategy)
        progress = None
        if rank == 0:
            with failure.catching(), storage_writes(run_dir, WORKERS_FILE):
                still_owner()
                run_dir.mkdir()
                (run_dir / WORKERS_FILE).write_text(json.dumps(workers, indent=2))
                progress = ProgressLog(run_dir, config.train.steps, config.metric, before_write=still_owner)
                if payload is not None:
                    progress.record({"event": "resumed", "from_step": payload["step"]})
        share = share_of_meta_batch(config.train.meta_batch_size, rank, world_size)
        experiment.meta_gradient.plan(config.train.steps - state.step)
        with prefetched_tasks(experiment, share, config.train.steps) as batches:
            train_loop(
                experiment,
                state,
                progress,
                distributed_meta_step(rank, world_size, failure, run_dir, batches),
                report_checkpoint(experiment, rank, failure, run_dir, still_owner),
                leader_failure=failure,
                leader_decision=from_rank_zero,
                validation=shared_validation(rank, world_size, failure),
                conditioning=shared_conditioning(rank, world_size, failure),
            )
        failure.agree()  # what rank 0 did after the last checkpoint
        if loop_config.get("final_eval"):
            test = final_meta_test(experiment, state, rank, world_size, failure)
            if rank == 0:  # after the last collective: no rank waits for this one
                still_owner()
                with storage_writes(run_dir, META_TEST_FILE):
                    (run_dir / META_TEST_FILE).write_text(json.dumps(test.to_dict(), indent=2))
    except DistmetaError as error:
        send_error(loop_config["errors"], error)
