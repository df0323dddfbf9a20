"""Launch distributed meta-training: check everything on the driver, then `TorchTrainer.fit()`.

User errors (config, data, resources, a changed config on resume, a torch that
cannot use the GPUs asked for) are found here, before any worker starts, because
Ray Train would retry them like crashes. The driver checks on the CPU and never
computes on a device: the workers train and take the final meta-test.
A run lives in `<storage>/<name>/`, a local folder every node mounts or a bucket
(`s3://...`, `gs://...`: see `distmeta.storage`); running again with the same storage
and name resumes from its latest checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow
import ray
import ray.train
from ray.actor import ActorHandle
from ray.train import CheckpointConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from distmeta.config import Config, to_dict
from distmeta.errors import ConfigError
from distmeta.evaluation import EvalResult
from distmeta.experiment import driver_experiment
from distmeta.learned_optimizer_runs.training import build_run, unrolls_line
from distmeta.runtime.autoscaling import provide_workers, read_capacity
from distmeta.runtime.capacity import ClusterCapacity, WorkerShape, check_within_maximum, workers_at_most, workers_now
from distmeta.runtime.cuda_probe import check_workers_torch
from distmeta.runtime.follow import MetricsFollower
from distmeta.runtime.optimizer_worker import train_worker as optimizer_train_worker
from distmeta.runtime.recovery import failure_config, recovery_reported
from distmeta.runtime.session import claim_run
from distmeta.runtime.storage import META_TEST_FILE, WORKERS_FILE
from distmeta.runtime.worker import train_worker
from distmeta.runtime.worker_errors import error_box, raise_sent_error
from distmeta.storage import Location, UnknownStorageError, as_path, location, ray_storage
from distmeta.training.checkpoint import (
    check_resumable,
    checkpoint_step,
    latest_checkpoint,
    load_checkpoint,
    newest_readable_checkpoint,
)
from distmeta.training.progress import summary_table
from distmeta.training.trainer import TrainResult, run_summary, summary_rows


@dataclass(frozen=True)
class ClusterRequest:
    workers: int = 1
    gpus_per_worker: int | None = 0
    """0 or 1. None: 1 when the cluster has, or its autoscaler can add, a GPU for every worker, else 0."""
    cpus_per_worker: int = 1
    address: str | None = None
    """A running Ray cluster ("auto", "ray://host:10001", ...); None starts a local one."""
    storage: str = "runs"
    name: str = "distmeta"
    max_failures: int = 3
    """Worker-group restarts (from the latest checkpoint) before the run fails."""
    scale_timeout_s: float = 900.0
    """How long to wait for an autoscaler to add the nodes the workers need (cloud GPU
    nodes take minutes to boot and pull their image); after a node is lost mid-run, how
    long in all to wait for the cluster to hold the workers again (see `runtime.recovery`)."""


def check_request(config: Config, request: ClusterRequest) -> None:
    if request.workers < 1:
        raise ConfigError("--workers", f"must be at least 1, got {request.workers}")
    if request.workers > config.train.meta_batch_size:
        raise ConfigError(
            "train.meta_batch_size",
            f"{config.train.meta_batch_size} tasks cannot be shared among "
            f"{request.workers} workers: give each at least one",
        )
    if request.gpus_per_worker is not None and request.gpus_per_worker < 0:
        raise ConfigError("--gpus-per-worker", f"must be 0 or 1, got {request.gpus_per_worker}")
    if request.gpus_per_worker is not None and request.gpus_per_worker > 1:
        raise ConfigError(
            "--gpus-per-worker",
            f"must be 0 or 1, got {request.gpus_per_worker}: a worker trains on one "
            f"device, so further GPUs would sit idle; use more workers instead",
        )
    if request.cpus_per_worker < 1:
        raise ConfigError("--cpus-per-worker", f"must be at least 1, got {request.cpus_per_worker}")
    if request.scale_timeout_s <= 0:
        raise ConfigError("--scale-timeout", f"must be more than 0 seconds, got {request.scale_timeout_s:g}")


def with_gpus_decided(request: ClusterRequest, capacity: ClusterCapacity) -> tuple[ClusterRequest, str]:
    """Decide "GPUs per worker: automatic" from what the cluster has or can grow to.

    Returns the request and what to say about the choice in the run's first line
    (nothing when the user chose): one GPU per worker when the live nodes, or the node
    types the autoscaler can add, hold `request.workers` one-GPU workers; else CPUs.
    """
    if request.gpus_per_worker is not None:
        return request, ""
    gpu_worker = WorkerShape(request.cpus_per_worker, 1)
    most = workers_at_most(capacity, gpu_worker)
    if workers_now(capacity, gpu_worker) >= request.workers or (most is not None and most >= request.workers):
        return dataclasses.replace(request, gpus_per_worker=1), " (a GPU per worker: the cluster has or can add them)"
    if most == 0:
        reason = "the cluster has no GPU and can add none"
    elif most is None:
        reason = f"the cluster has GPUs for {workers_now(capacity, gpu_worker)} worker(s) and may add more"
    else:
        reason = f"the cluster holds {most} one-GPU worker(s), not {request.workers}"
    return dataclasses.replace(request, gpus_per_worker=0), f" (on CPU: {reason})"


def worker_shape(request: ClusterRequest) -> WorkerShape:
    return WorkerShape(request.cpus_per_worker, request.gpus_per_worker or 0)


def check_resources(
    request: ClusterRequest, capacity: ClusterCapacity, field: str = "--workers", what: str = ""
) -> None:
    """Refuse at once what the cluster can never hold, even grown: a worker no node (type)
    holds, or more workers than its largest size holds; say what it can hold."""
    check_within_maximum(capacity, worker_shape(request), request.workers, field, what)


def train_distributed(config: Config, request: ClusterRequest, print_fn=print, final_eval: bool = True) -> TrainResult:
    """Meta-train on Ray with `request.workers` workers; resumes `<storage>/<name>` if it has a checkpoint."""
    check_request(config, request)
    check_on_driver(config)
    if config.learns_update_rule and request.gpus_per_worker is None:
        request = dataclasses.replace(request, gpus_per_worker=0)  # learned optimisers train on the CPU
    storage = check_storage(request.storage)
    run_dir = storage / request.name
    newest_seen = latest_checkpoint(run_dir)
    previous = newest_readable_checkpoint(run_dir)
    if previous is not None:
        check_resumable(previous, config)
    with connected_to_cluster(request):
        capacity = read_capacity()
        request, device_note = with_gpus_decided(request, capacity)
        check_device(config, request)
        check_resources(request, capacity)
        print_fn(
            f"run directory {run_dir}; {request.workers} worker(s) x ({request.cpus_per_worker} CPU, "
            f"{request.gpus_per_worker} GPU){device_note}; run the same command with --name {request.name} "
            f"to resume"
        )
        provide_workers(worker_shape(request), request.workers, request.scale_timeout_s, print_fn)
        check_workers_torch(request, config.train.device)  # on a node the autoscaler may just have added
        # from here a killed driver's workers, still alive, stop writing to the run; so the
        # checkpoint it resumes from is read after this (they may have written a newer one)
        session = claim_run(run_dir)
        start_step = announced_resume(run_dir, previous, newest_seen, config, print_fn)
        (run_dir / META_TEST_FILE).unlink()
        started = time.perf_counter()
        with (
            MetricsFollower(run_dir / "metrics.jsonl", config.train.steps, config.metric, print_fn),
            error_box() as errors,
        ):
            with recovery_reported(
                run_dir, request.workers, worker_shape(request), request.max_failures, request.scale_timeout_s
            ):
                result = build_trainer(
                    config, request, storage, run_dir, errors, final_eval=final_eval, session=session
                ).fit()
            raise_sent_error(errors)  # the user error that stopped the workers, as they raised it
        wall = time.perf_counter() - started
    with result.checkpoint.as_directory() as folder:
        payload = load_checkpoint(folder)
    params = payload["meta_parameters"]  # on the CPU
    test = meta_test_result(run_dir) if final_eval else None
    summary = _summary(config, request, run_dir, payload, payload["step"] - start_step, wall, test)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print_fn(summary_table(summary_rows(summary)))
    return TrainResult(as_path(run_dir), params, payload["step"], test, summary)


def announced_resume(
    run_dir: Location, previous: dict | None, newest_seen: Path | Location | None, config: Config, print_fn
) -> int:
    """The step the run resumes from (0 for a new run), said when there is one.

    `previous` is the checkpoint read before the claim, when `newest_seen` was the newest file;
    the folder is read again only if a newer file has appeared since (a killed driver's workers
    may have written one), so that a damaged newest file is warned about once, not twice."""
    latest = latest_checkpoint(run_dir)
    if latest is not None and (newest_seen is None or checkpoint_step(latest) > checkpoint_step(newest_seen)):
        previous = newest_readable_checkpoint(run_dir)
    if previous is None:
        return 0
    print_fn(
        f"resuming {run_dir} from the checkpoint of step {previous['step']} of {config.train.steps}; "
        f"steps after it run again{unrolls_note(config, previous)}"
    )
    return previous["step"]


def check_on_driver(config: Config) -> None:
    """Everything about the run that can be checked on the driver's CPU, before any worker
    starts: every split's data (a few-shot run), the optimisee's first loss (a learned optimiser)."""
    if config.learns_update_rule:
        build_run(config)
        return
    driver_experiment(config)


def unrolls_note(config: Config, checkpoint: dict) -> str:
    """For a learned optimiser: where its persistent unrolls continue ("" otherwise)."""
    return f"; {unrolls_line(config, checkpoint)}" if config.learns_update_rule else ""


def check_device(config: Config, request: ClusterRequest) -> None:
    """`train.device: cuda` needs workers with a GPU (the driver's own devices do not matter)."""
    if config.train.device == "cuda" and not request.gpus_per_worker:
        raise ConfigError(
            "train.device", "cuda, but the workers get no GPU: pass --gpus-per-worker 1 (or set train.device: auto)"
        )


def meta_test_result(run_dir: Location) -> EvalResult:
    """The final meta-test the workers took (see `worker.final_meta_test`)."""
    return EvalResult(**json.loads((run_dir / META_TEST_FILE).read_text()))


def check_storage(storage: str) -> Location:
    """The storage folder (local, made absolute) or bucket, made and checked writable before
    any worker starts: a bucket that does not exist or refuses writes stops the run here."""
    try:
        where = location(storage)
    except UnknownStorageError as error:
        raise ConfigError("--storage", f"{error}; give a path that every node mounts or a bucket URI") from None
    if where.is_local:
        where = location(Path(where.path).resolve())
    try:
        where.mkdir()
        probe = where / f".distmeta-write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except (OSError, pyarrow.ArrowException) as error:
        reason = error.strerror if where.is_local else str(error).strip()
        raise ConfigError("--storage", f"{where} is not writable ({reason})") from None
    return where


@contextmanager
def connected_to_cluster(request: ClusterRequest) -> Iterator[None]:
    """Inside: connected to Ray. A caller already connected stays so; otherwise this joins
    `request.address` or starts a local cluster, and leaves (or stops) it at the end."""
    if ray.is_initialized():
        yield
        return
    init_ray(request)
    try:
        yield
    finally:
        ray.shutdown()


def init_ray(request: ClusterRequest) -> None:
    if request.address is not None:
        ray.init(address=request.address, log_to_driver=False)
        return
    cpus = max(os.cpu_count() or 1, request.workers * request.cpus_per_worker)
    # The dashboard serves Ray's state API, which Ray Train's PlacementGroupCleaner needs to
    # notice a controller that ended without cleaning up (a trial that ASHA stopped): without
    # it that trial's CPUs stay reserved and later trials wait for them for ever.
    # address "local": a cluster of its own, even where another (`ray start`) runs on this
    # machine; without it, ray.init() joins the newest of those and refuses num_cpus.
    ray.init(address="local", num_cpus=cpus, include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=False)


def build_trainer(
    config: Config,
    request: ClusterRequest,
    storage: Location,
    run_dir: Location,
    errors: ActorHandle,
    callbacks: tuple = (),
    final_eval: bool = False,
    session: str | None = None,
) -> TorchTrainer:
    """The TorchTrainer of one run: `request.workers` workers running `train_worker`
    (with `final_eval`, they take the meta-test at the end), sending a user error to
    `errors` (an `ErrorBox`); with `session`, rank 0 stops writing once another driver
    has claimed the run (`runtime.session`)."""
    return TorchTrainer(
        worker_function(config),
        train_loop_config={
            "config": to_dict(config),
            "run_dir": str(run_dir),
            "threads_per_worker": request.cpus_per_worker,
            "command_dir": os.getcwd(),
            "gpus_per_worker": request.gpus_per_worker,
            "final_eval": final_eval,
            "errors": errors,
            "session": session,
        },
        scaling_config=scaling_config(request),
        torch_config=torch_config(config),
        run_config=RunConfig(
            name=request.name,
            **ray_storage(storage),
            failure_config=failure_config(request.max_failures, request.scale_timeout_s),
            checkpoint_config=CheckpointConfig(num_to_keep=3),
            callbacks=list(callbacks),
        ),
    )


def worker_function(config: Config):
    """What each worker of the run runs: the few-shot meta-step, or a learned optimiser's."""
    if config.learns_update_rule:
        return optimizer_train_worker
    return train_worker


def scaling_config(request: ClusterRequest) -> ScalingConfig:
    """`request.workers` workers, each holding its CPUs and GPUs (a GPU worker uses NCCL)."""
    resources = {"CPU": request.cpus_per_worker}
    if request.gpus_per_worker:
        resources["GPU"] = request.gpus_per_worker
    return ScalingConfig(
        num_workers=request.workers, use_gpu=bool(request.gpus_per_worker), resources_per_worker=resources
    )


def torch_config(config: Config) -> TorchConfig:
    """gloo when `train.device: cpu` keeps the workers on CPU although Ray gave them GPUs
    (Ray picks nccl for any worker holding a GPU); else Ray's choice."""
    return TorchConfig(backend="gloo" if config.train.device == "cpu" else None)


def _summary(
    config: Config,
    request: ClusterRequest,
    run_dir: Location,
    payload: dict,
    steps_run: int,
    wall: float,
    test: EvalResult | None,
) -> dict:
    workers_file = run_dir / WORKERS_FILE
    workers = json.loads(workers_file.read_text()) if workers_file.exists() else []
    return run_summary(
        config,
        payload["step"],
        steps_run,
        wall,
        [worker["device"] for worker in workers],
        workers[0]["inner_loops"] if workers else config.train.vectorize,
        payload.get("metrics", {}),
        test,
        workers=request.workers,
        gpus_per_worker=request.gpus_per_worker,
        nodes=len({worker["node"] for worker in workers}),
    )
