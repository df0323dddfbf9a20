"""`distmeta bench`: meta-steps timed phase by phase with 1, 2, 4, ... Ray Train workers.

For each worker count the driver runs one `TorchTrainer` whose workers take warm-up
steps, then timed steps (`distmeta.benchmarking.timing`), and send rank 0's gathered
times back. Everything a user can get wrong (config, data, a worker count the
cluster cannot hold, a strong-scaling batch too small to share) is refused on the
driver before the first worker count runs, as `distmeta train` does.

Weak scaling keeps each worker's batch (global batch = B x W); strong scaling keeps
the global batch B and shares it among the W workers.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ray
import ray.train
import ray.train.torch
import torch
from ray.train import FailureConfig, RunConfig
from ray.train.torch import TorchTrainer

from distmeta.benchmarking.machine import cpu_model
from distmeta.benchmarking.report import (
    CountRun,
    CountSummary,
    bench_json,
    bench_table,
    merge_rounds,
    summarize,
    with_efficiency,
    write_plot,
)
from distmeta.benchmarking.result_box import received_times, result_box, send_times
from distmeta.benchmarking.timing import timed_steps
from distmeta.config import Config, from_dict, replace, to_dict
from distmeta.errors import ConfigError, DistmetaError
from distmeta.runtime.agreement import RankFailure
from distmeta.runtime.autoscaling import read_capacity, workers_provided
from distmeta.runtime.capacity import ClusterCapacity, workers_at_most, workers_now
from distmeta.runtime.cuda_probe import check_workers_torch
from distmeta.runtime.launcher import (
    ClusterRequest,
    check_on_driver,
    check_request,
    check_resources,
    connected_to_cluster,
    scaling_config,
    torch_config,
    with_gpus_decided,
    worker_shape,
)
from distmeta.runtime.optimizer_worker import bench_worker as optimizer_bench_worker
from distmeta.runtime.worker import describe_workers, start_worker, worker_experiment
from distmeta.runtime.worker_errors import error_box, raise_sent_error, send_error
from distmeta.training.trainer import initial_state

SCALINGS = ("weak", "strong")


@dataclass(frozen=True)
class BenchRequest:
    workers: tuple[int, ...] | None = None
    """Worker counts to measure; None: 1, 2, 4, ... up to what the cluster holds."""
    gpus_per_worker: int | None = None
    """None: 1 when the cluster has, or can add, a GPU for every worker of the smallest count, else 0."""
    cpus_per_worker: int = 1
    meta_batch: int | None = None
    """Weak scaling: tasks per worker; strong: the global batch. None: the config's train.meta_batch_size."""
    scaling: str = "weak"
    steps: int = 20
    """Timed meta-steps per worker count."""
    warmup: int = 5
    """Untimed meta-steps before them (first-call costs, thread pools, allocator)."""
    rounds: int = 1
    """Runs of every worker count, taken in turn (1, 2, 1, 2, ...); their steps are pooled."""
    address: str | None = None
    scale_timeout_s: float = 900.0
    """How long to wait for an autoscaler to add the nodes of the largest count."""
    json_path: str | None = None
    plot_path: str | None = None
    command: dict = dataclasses.field(default_factory=dict)
    """The command-line options as given, recorded in the JSON."""


@dataclass
class BenchResult:
    summaries: list[CountSummary]
    report: dict
    json_path: Path | None
    plot_path: Path | None


def run_bench(config: Config, request: BenchRequest, print_fn=print) -> BenchResult:
    """Measure every worker count of `request` on the cluster; print the table, write JSON and plot."""
    batch = request.meta_batch or config.train.meta_batch_size
    check_bench_request(config, request, batch)
    check_on_driver(config)  # every split's data (or the optimisee) is checked here, on the driver's CPU
    if config.learns_update_rule and request.gpus_per_worker is None:
        request = dataclasses.replace(request, gpus_per_worker=0)  # learned optimisers train on the CPU
    # The local cluster gets this machine's real cores (not one CPU per requested worker, as
    # `distmeta train` would): workers sharing cores would measure the sharing, not scaling.
    with connected_to_cluster(
        ClusterRequest(workers=1, cpus_per_worker=request.cpus_per_worker, address=request.address)
    ):
        capacity = read_capacity()
        clusters, device_note = cluster_requests(request, capacity)
        for cluster in clusters:  # every count (the default ones too) is checked before any runs
            check_request(_config_for(config, request.scaling, batch, cluster.workers), cluster)
            check_resources(cluster, capacity)
        counts = ", ".join(str(cluster.workers) for cluster in clusters)
        print_fn(
            f"bench: {_task_words(config)} / {config.algorithm.name} / {config.model_name}, {request.scaling} "
            f"scaling, {_batch_words(request.scaling, batch)}; workers {counts}, each "
            f"({clusters[0].cpus_per_worker} CPU, {clusters[0].gpus_per_worker} GPU){device_note}; "
            f"{request.warmup} warm-up + {request.steps} timed meta-steps per count and round, "
            f"{request.rounds} round(s)"
        )
        rounds: dict[int, list[CountRun]] = {cluster.workers: [] for cluster in clusters}
        largest = clusters[-1]
        with (
            workers_provided(worker_shape(largest), largest.workers, request.scale_timeout_s, print_fn),
            tempfile.TemporaryDirectory(prefix="distmeta-bench-") as storage,
        ):
            for round_ in range(1, request.rounds + 1):
                for cluster in clusters:
                    run = measure(
                        _config_for(config, request.scaling, batch, cluster.workers),
                        cluster,
                        request,
                        Path(storage),
                        bench_worker_of(config),
                    )
                    rounds[cluster.workers].append(run)
                    measured = summarize(run)
                    print_fn(
                        f"{cluster.workers} worker(s), round {round_}/{request.rounds}: "
                        f"{measured.tasks_per_s:,.0f} tasks/s ({measured.steps} steps of "
                        f"{measured.global_batch} tasks in {measured.wall_s:.2f} s)"
                    )
        runs = [merge_rounds(rounds[cluster.workers]) for cluster in clusters]
        machine = machine_info(runs)
    summaries, note = with_efficiency([summarize(run) for run in runs])
    report = bench_json(_request_record(config, request, batch, clusters[0], runs), machine, summaries, note)
    if config.learns_update_rule:
        report["unroll_steps"] = unroll_steps(config, summaries)
        report["measurement"] = UNROLL_MEASUREMENT
    print_fn(bench_table(summaries))
    print_fn(f"efficiency {note}")
    if config.learns_update_rule:
        print_fn(unroll_steps_line(report["unroll_steps"]))
    json_path, plot_path = _write_outputs(config, request, report, summaries)
    print_fn(f"results: {json_path}, {plot_path}")
    return BenchResult(summaries, report, json_path, plot_path)


def check_bench_request(config: Config, request: BenchRequest, batch: int) -> None:
    """Refuse, before Ray is asked for anything, what no cluster could run."""
    if request.scaling not in SCALINGS:
        raise ConfigError("--scaling", f"must be weak or strong, got {request.scaling!r}")
    if request.steps < 1:
        raise ConfigError("--steps", f"must be at least 1, got {request.steps}")
    if request.rounds < 1:
        raise ConfigError("--rounds", f"must be at least 1, got {request.rounds}")
    if request.warmup < 0:
        raise ConfigError("--warmup", f"must be 0 or more, got {request.warmup}")
    if request.scale_timeout_s <= 0:
        raise ConfigError("--scale-timeout", f"must be more than 0 seconds, got {request.scale_timeout_s:g}")
    if batch < 1:
        raise ConfigError("--meta-batch", f"must be at least 1, got {batch}")
    if request.workers is not None and not request.workers:
        raise ConfigError("--workers", "give at least one worker count")
    for workers in request.workers or ():
        # strong scaling shares the batch: each of W workers needs at least one task
        cluster = ClusterRequest(
            workers=workers, gpus_per_worker=request.gpus_per_worker, cpus_per_worker=request.cpus_per_worker
        )
        check_request(_config_for(config, request.scaling, batch, workers), cluster)


def parse_worker_counts(text: str | None) -> tuple[int, ...] | None:
    """ "1,2,4" -> (1, 2, 4); None stays None (the default counts)."""
    if text is None:
        return None
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError("--workers", f"expected worker counts like 1,2,4,8, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise ConfigError("--workers", f"every worker count must be at least 1, got {text!r}")
    return counts


def global_batch_size(scaling: str, batch: int, workers: int) -> int:
    return batch * workers if scaling == "weak" else batch


def _config_for(config: Config, scaling: str, batch: int, workers: int) -> Config:
    """The config a count runs: its global batch as train.meta_batch_size, shared among the workers."""
    return replace(config, train={"meta_batch_size": global_batch_size(scaling, batch, workers)})


def cluster_requests(request: BenchRequest, capacity: ClusterCapacity) -> tuple[list[ClusterRequest], str]:
    """One request per worker count, all with the same CPUs and GPUs per worker, and what
    to say about an automatic GPU choice.

    "GPUs: automatic" is decided once, on the smallest count, so that every count runs
    on the same kind of device; a larger count the GPUs cannot hold is then refused,
    saying what the cluster has, rather than quietly measured on CPUs.
    """
    smallest = ClusterRequest(
        workers=min(request.workers or (1,)),
        gpus_per_worker=request.gpus_per_worker,
        cpus_per_worker=request.cpus_per_worker,
        address=request.address,
    )
    decided, device_note = with_gpus_decided(smallest, capacity)
    counts = sorted(set(request.workers or default_worker_counts(decided, capacity)))
    return [dataclasses.replace(decided, workers=workers) for workers in counts], device_note


def default_worker_counts(one_worker: ClusterRequest, capacity: ClusterCapacity) -> list[int]:
    """1, 2, 4, ... up to the number of workers the cluster holds at once, grown to its
    maximum where the autoscaler's node types are known."""
    worker = worker_shape(one_worker)
    most = workers_at_most(capacity, worker)
    most = most if most is not None else workers_now(capacity, worker)
    counts = [1]
    while counts[-1] * 2 <= most:
        counts.append(counts[-1] * 2)
    return counts


# ---------------------------------------------------------------- one worker count


def bench_worker_of(config: Config):
    """The per-worker bench function: the few-shot meta-step's, or a learned optimiser's."""
    if config.learns_update_rule:
        return optimizer_bench_worker
    return bench_worker


UNROLL_MEASUREMENT = (
    "A learned optimiser's meta-step, as its Ray workers take it in training (rank_meta_step of "
    "distmeta.learned_optimizer_runs.training), with time.perf_counter around each phase: inner_loop = the "
    "meta-gradient estimates of this rank's unrolls (each moved on by truncation_length optimisee steps, the "
    "unroll forward and its meta-backward together, which cannot be timed apart); sync_wait = a dist.barrier() "
    "before the all-reduce; all_reduce = all_reduce_sum, the one collective of a step; optimizer = the "
    "finiteness check, the clip and the meta-optimiser step. Nothing is sampled (sampling = 0) and there is no "
    "separate outer backward (outer_backward = 0). Per step, phase times are the mean over ranks and the step "
    "time is the slowest rank's wall clock; wall_s is the sum of the timed steps' times; tasks_per_s = unrolls "
    "(global batch) x steps / wall_s; unroll_steps_per_s = tasks_per_s x truncation_length."
)


def unroll_steps(config: Config, summaries: list[CountSummary]) -> dict:
    """A learned optimiser's throughput in optimisee (unroll) steps per second: each "task" of a
    meta-step is one unroll moved on by `truncation_length` steps (ES / PES pairs not counted)."""
    truncation = config.algorithm.learned_optimizer.truncation_length
    rates = {str(s.workers): s.tasks_per_s * truncation for s in summaries}
    base = summaries[0]
    return {
        "truncation_length": truncation,
        "unroll_steps_per_s": rates,
        "ratio_to_smallest": {str(s.workers): s.tasks_per_s / base.tasks_per_s for s in summaries},
        "smallest_workers": base.workers,
    }


def unroll_steps_line(record: dict) -> str:
    rates = ", ".join(f"{workers} worker(s) {rate:,.0f}" for workers, rate in record["unroll_steps_per_s"].items())
    ratios = ", ".join(f"{workers}: {ratio:.2f}x" for workers, ratio in record["ratio_to_smallest"].items())
    return (
        f"unroll steps/s (a task = one unroll moved on by {record['truncation_length']} steps): {rates}; "
        f"relative to {record['smallest_workers']} worker(s): {ratios}"
    )


def measure(config: Config, cluster: ClusterRequest, request: BenchRequest, storage: Path, worker=None) -> CountRun:
    """Run `cluster.workers` Ray Train workers through warm-up and timed steps; their times
    (`worker`: the per-worker function, by default the few-shot meta-step's `bench_worker`)."""
    check_workers_torch(cluster, config.train.device)
    with result_box() as box:
        with error_box() as errors:
            trainer = TorchTrainer(
                worker or bench_worker,
                train_loop_config={
                    "config": to_dict(config),
                    "threads_per_worker": cluster.cpus_per_worker,
                    "command_dir": os.getcwd(),
                    "gpus_per_worker": cluster.gpus_per_worker,
                    "warmup": request.warmup,
                    "steps": request.steps,
                    "box": box,
                    "errors": errors,
                },
                scaling_config=scaling_config(cluster),
                torch_config=torch_config(config),
                # a failed bench is reported, not retried: a retry would mix two runs' times
                run_config=RunConfig(
                    name=f"bench-{cluster.workers}-workers-{time.strftime('%H%M%S')}",
                    storage_path=str(storage),
                    failure_config=FailureConfig(max_failures=0),
                ),
            )
            trainer.fit()
            raise_sent_error(errors)  # e.g. a NaN loss, as the workers raised it
        outcome = received_times(box)
    if outcome is None:
        raise DistmetaError(f"the {cluster.workers}-worker bench ended without sending its times")
    return CountRun(cluster.workers, config.train.meta_batch_size, outcome["ranks"], outcome["devices"])


def bench_worker(loop_config: dict) -> None:
    """The per-worker function: build the experiment, warm up, time the steps, send them from rank 0."""
    rank, world_size = start_worker(loop_config)
    box = loop_config["box"]
    failure = RankFailure(rank)
    try:
        with failure.catching():  # this rank's data and device
            config = from_dict(loop_config["config"])
            experiment = worker_experiment(config, loop_config.get("gpus_per_worker", 0))
        failure.agree()
        state = initial_state(experiment)
        workers = describe_workers(rank, str(experiment.device), experiment.strategy)
        times = timed_steps(experiment, state, rank, world_size, loop_config["warmup"], loop_config["steps"], failure)
        send_times(box, rank, workers, [t.to_dict() for t in times], device_name(experiment.device))
    except DistmetaError as error:  # every rank at once (see runtime.agreement): not a crash
        send_error(loop_config["errors"], error)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


# ---------------------------------------------------------------- records


def machine_info(runs: list[CountRun]) -> dict:
    total = ray.cluster_resources()
    cpus, gpus = total.get("CPU", 0), total.get("GPU", 0)
    names = sorted({device["device_name"] for run in runs for device in run.devices})
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "ray": ray.__version__,
        "cluster": {"cpus": cpus, "gpus": gpus, "nodes": len(ray.nodes())},
        "device_names": names,
    }


def _request_record(
    config: Config, request: BenchRequest, batch: int, cluster: ClusterRequest, runs: list[CountRun]
) -> dict:
    return {
        "command": request.command,
        "task": config.task.name,
        "synthetic_data": is_synthetic(config),
        "data": _data_words(config),
        "algorithm": config.algorithm.name,
        "model": config.model_name,
        "scaling": request.scaling,
        "meta_batch": batch,
        "meta_batch_means": "tasks per worker" if request.scaling == "weak" else "global tasks per step",
        "steps": request.steps,
        "warmup": request.warmup,
        "rounds": request.rounds,
        "cpus_per_worker": cluster.cpus_per_worker,
        "gpus_per_worker": cluster.gpus_per_worker,
        "address": request.address,
        "inner_loops": runs[0].devices[0]["inner_loops"] if runs[0].devices else config.train.vectorize,
    }


def _task_words(config: Config) -> str:
    if is_synthetic(config):
        return f"{config.task.name} (SYNTHETIC: random images of its shapes, not the dataset)"
    return config.task.name


def is_synthetic(config: Config) -> bool:
    return config.task.name == "omniglot" and config.task.omniglot.synthetic


def _data_words(config: Config) -> str:
    if config.task.name != "omniglot":
        return "built in"
    if config.task.omniglot.synthetic:
        return (
            f"synthetic: random {config.task.omniglot.image_size}x{config.task.omniglot.image_size} images, "
            f"{config.task.ways_of('train')}-way {config.task.shots}-shot, {config.task.query_shots} query per class"
        )
    return ", ".join(config.task.omniglot.roots)


def _batch_words(scaling: str, batch: int) -> str:
    return f"{batch} tasks per worker" if scaling == "weak" else f"{batch} tasks per step shared among the workers"


def _write_outputs(
    config: Config, request: BenchRequest, report: dict, summaries: list[CountSummary]
) -> tuple[Path, Path]:
    task = f"{config.task.name}_synthetic" if is_synthetic(config) else config.task.name
    stem = f"bench_{task}_{config.algorithm.name}_{request.scaling}"
    json_path = Path(request.json_path or f"{stem}.json")
    plot_path = Path(request.plot_path or json_path.with_suffix(".png"))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2))
    task = f"{config.task.name} (synthetic)" if is_synthetic(config) else config.task.name
    write_plot(
        plot_path,
        summaries,
        f"{task} / {config.algorithm.name}, {request.scaling} scaling, "
        f"{_batch_words(request.scaling, report['request']['meta_batch'])}",
    )
    return json_path, plot_path
