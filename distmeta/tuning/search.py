"""A Ray Tune search in which every trial is a distributed training run.

Ray's Train V2 pattern for Tune: each trial runs a small driver function that builds
a `TorchTrainer` (the same one `distmeta train` uses, with W workers) and forwards
rank 0's reports to Tune through `TuneReportCallback`. Workers report at every
validation, so ASHA compares trials on the validation metric as they go.

Everything a trial could trip over is checked before the first trial: the config,
the data, the search space (every bound and listed value), the storage, and that
one trial's workers fit the cluster. Trials run as many at once as the cluster
holds, the rest queue; a diverging trial ends as an error and ranks last.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from distmeta.config import Config, replace, save_config
from distmeta.errors import ConfigError, DistmetaError
from distmeta.runtime.autoscaling import provide_workers, read_capacity
from distmeta.runtime.capacity import ClusterCapacity, workers_at_most, workers_now
from distmeta.runtime.cuda_probe import check_workers_torch
from distmeta.runtime.launcher import (
    ClusterRequest,
    build_trainer,
    check_on_driver,
    check_request,
    check_resources,
    check_storage,
    connected_to_cluster,
    with_gpus_decided,
    worker_shape,
)
from distmeta.runtime.worker_errors import error_box, raise_sent_error
from distmeta.storage import Location, as_path, ray_storage
from distmeta.training.progress import column_table
from distmeta.tuning.plot import plot_search
from distmeta.tuning.space import Dimension, SearchSpace, with_values

TRIAL_DRIVER_RESOURCES = {"cpu": 0, "memory": 1 << 20}
"""What a trial's own driver holds: no CPU, so that waiting trial drivers never hold
the CPUs their workers need (Tune refuses an all-zero request, hence 1 MiB of memory).
`max_concurrent_trials` keeps the trials running at once within what the cluster has."""


@dataclass(frozen=True)
class TuneRequest:
    trials: int = 8
    """Samples of the space (Tune's num_samples); each covers every grid combination."""
    workers_per_trial: int = 1
    gpus_per_worker: int | None = 0
    cpus_per_worker: int = 1
    scheduler: str = "asha"
    metric: str | None = None
    """Default: val_accuracy (classification) or val_mse (regression)."""
    mode: str | None = None
    """Default: max for accuracy, min otherwise."""
    address: str | None = None
    storage: str = "runs"
    name: str = "tune"
    scale_timeout_s: float = 900.0
    """How long to wait for an autoscaler to add the nodes of the first trial."""


@dataclass
class TrialOutcome:
    trial_id: str
    values: dict[str, Any]
    metric: float | None
    steps: int | None
    status: str
    """finished, stopped early (ASHA), or failed: <why>."""


@dataclass
class SearchResult:
    folder: Path | Location
    """The search's folder: a `Location` when it is in a bucket (`distmeta.storage`)."""
    ranked: list[TrialOutcome]
    best_config_path: Path | Location | None
    metric: str
    mode: str


def metric_and_mode(config: Config, request: TuneRequest) -> tuple[str, str]:
    metric = request.metric or f"val_{config.metric}"
    mode = request.mode or ("max" if "accuracy" in metric else "min")
    if mode not in ("max", "min"):
        raise ConfigError("--mode", f"must be max or min, got {mode!r}")
    known = {f"{part}_{m}" for part in ("val", "train") for m in ("accuracy", "mse", "loss")} | {"meta_loss"}
    if metric not in known:
        raise ConfigError("--metric", f"unknown metric {metric!r}; one of {', '.join(sorted(known))}")
    return metric, mode


def trial_config(base: Config, values: dict[str, Any]) -> Config:
    """A trial's config: the searched values, and a report (checkpoint) at every validation."""
    config = with_values(base, values)
    return replace(config, train={"checkpoint_every": config.train.val_every})


def run_search(base: Config, space: SearchSpace, request: TuneRequest, print_fn=print) -> SearchResult:
    if request.trials < 1:
        raise ConfigError("--trials", f"must be at least 1, got {request.trials}")
    if request.scheduler not in ("asha", "fifo"):
        raise ConfigError("--scheduler", f"must be asha or fifo, got {request.scheduler!r}")
    metric, mode = metric_and_mode(base, request)
    cluster = ClusterRequest(
        workers=request.workers_per_trial,
        gpus_per_worker=request.gpus_per_worker,
        cpus_per_worker=request.cpus_per_worker,
        address=request.address,
        storage=request.storage,
        name=request.name,
        scale_timeout_s=request.scale_timeout_s,
    )
    check_request(base, cluster)
    check_on_driver(base)  # the data (or the optimisee), checked once here (on the CPU) rather than in every trial
    storage = check_storage(request.storage)
    folder = storage / request.name
    with connected_to_cluster(cluster):
        capacity = read_capacity()
        cluster, device_note = with_gpus_decided(cluster, capacity)
        concurrent = concurrent_trials(cluster, capacity, request.trials * space.grid_size())
        tuner = _tuner(base, space, request, cluster, storage, folder, metric, mode, concurrent, device_note, print_fn)
        # every concurrent trial's workers are asked of the autoscaler; the search starts
        # once one trial's are there, and the others start as their nodes come up (their
        # pending placement groups keep asking)
        provide_workers(
            worker_shape(cluster),
            cluster.workers,
            cluster.scale_timeout_s,
            print_fn,
            wanted=concurrent * cluster.workers,
            label="first trial's workers'",
        )
        check_workers_torch(cluster, base.train.device)
        started = time.perf_counter()
        grid = tuner.fit()
        wall = time.perf_counter() - started
    ranked = rank_trials(grid, space, metric, mode, base.train.steps)
    best = _write_outputs(folder, base, space, ranked, metric, mode, wall)
    print_fn(ranked_table(ranked, space, metric))
    unfinished = sum(outcome.status == "unfinished" for outcome in ranked)
    if unfinished or len(ranked) < request.trials * space.grid_size():
        print_fn("the search was interrupted: run the same command to resume it (finished trials are kept)")
    print_fn(f"results: {folder / 'results.csv'}, {folder / 'results.json'}, {folder / 'search.png'}")
    if best is not None:
        print_fn(f"best config: {best} (train it with: distmeta train {best})")
    return SearchResult(as_path(folder), ranked, best and as_path(best), metric, mode)


def concurrent_trials(cluster: ClusterRequest, capacity: ClusterCapacity, trials: int) -> int:
    """Trials whose workers the cluster holds at once, grown to its maximum (where the
    autoscaler's node types are known; else as it is now), at most `trials`; refuses a
    trial that can never fit."""
    check_resources(cluster, capacity, "--workers-per-trial", what=f"one trial's {cluster.workers} worker(s)")
    worker = worker_shape(cluster)
    most = workers_at_most(capacity, worker)
    workers = most if most is not None else workers_now(capacity, worker)
    return max(1, min(trials, workers // cluster.workers))


def _tuner(
    base: Config,
    space: SearchSpace,
    request: TuneRequest,
    cluster: ClusterRequest,
    storage: Location,
    folder: Location,
    metric: str,
    mode: str,
    concurrent: int,
    device_note: str,
    print_fn,
) -> tune.Tuner:
    trainable = tune.with_resources(_trial_driver(base, cluster, folder / "trials"), TRIAL_DRIVER_RESOURCES)
    param_space = {dimension.path: _tune_domain(dimension) for dimension in space.dimensions}
    filesystem = {} if folder.is_local else {"storage_filesystem": folder.filesystem}
    if tune.Tuner.can_restore(folder.path, **filesystem):
        print_fn(
            f"resuming the search in {folder}: finished trials are kept, unfinished ones run again "
            f"(each from its own latest checkpoint)"
        )
        return tune.Tuner.restore(
            folder.path,
            trainable=trainable,
            param_space=param_space,
            resume_unfinished=True,
            resume_errored=False,
            restart_errored=False,
            **filesystem,
        )
    validations = max(1, math.ceil(base.train.steps / base.train.val_every)) if base.train.val_every else 1
    scheduler = (
        ASHAScheduler(time_attr="training_iteration", max_t=validations, grace_period=1, reduction_factor=2)
        if request.scheduler == "asha"
        else FIFOScheduler()
    )
    print_fn(
        f"search {folder}: {request.trials} sample(s) x {space.grid_size()} grid point(s), "
        f"{concurrent} trial(s) at a time, each {cluster.workers} worker(s) x ({cluster.cpus_per_worker} CPU, "
        f"{cluster.gpus_per_worker} GPU){device_note}; {request.scheduler} on {metric} ({mode})"
    )
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=metric, mode=mode, scheduler=scheduler, num_samples=request.trials, max_concurrent_trials=concurrent
        ),
        run_config=tune.RunConfig(
            name=folder.name, **ray_storage(storage), failure_config=tune.FailureConfig(max_failures=0), verbose=1
        ),
    )


def _tune_domain(dimension: Dimension):
    low_high_or_values = list(dimension.values)
    if dimension.kind == "loguniform":
        return tune.loguniform(*low_high_or_values)
    if dimension.kind == "uniform":
        return tune.uniform(*low_high_or_values)
    if dimension.kind == "randint":
        return tune.randint(*low_high_or_values)
    if dimension.kind == "choice":
        return tune.choice(low_high_or_values)
    return tune.grid_search(low_high_or_values)


def _trial_driver(base: Config, cluster: ClusterRequest, trials_folder: Location):
    """The function each Tune trial runs: one distributed training run, reporting to Tune."""

    def run_trial(values: dict[str, Any]) -> None:
        trial_id = tune.get_context().get_trial_id()
        run_dir = trials_folder / trial_id
        run_dir.mkdir()
        (run_dir / "starts.log").append_text(f"{time.time():.3f}\n")  # one line per time this trial (re)starts
        config = trial_config(base, values)
        save_config(config, run_dir / "config.yaml")
        request = dataclasses.replace(cluster, name=trial_id)
        started = time.perf_counter()
        with error_box() as errors:
            result = build_trainer(
                config, request, trials_folder, run_dir, errors, callbacks=(TuneReportCallback(),)
            ).fit()
            raise_sent_error(errors)  # a NaN ends the trial as that error: it ranks last, the search goes on
        summary = {
            "trial": trial_id,
            "values": values,
            "final_train": result.metrics,
            "wall_time_s": time.perf_counter() - started,
            "workers": request.workers,
        }
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))

    return run_trial


def rank_trials(grid, space: SearchSpace, metric: str, mode: str, base_steps: int) -> list[TrialOutcome]:
    """Every trial, best first by its last reported `metric`; failed trials last."""
    outcomes = []
    for result in grid:
        config = config_of_trial(result)
        values = {path: config.get(path) for path in space.paths}
        metrics = result.metrics or {}
        reported = metrics.get(metric)
        value = reported if isinstance(reported, (int, float)) and math.isfinite(reported) else None
        trial_id = metrics.get("trial_id") or Path(result.path).name
        if result.error is not None:
            status = f"failed: {_short_error(result.error)}"
        elif metrics.get("step") is None:
            status = "unfinished"
        elif reported is not None and value is None:
            status = f"diverged: {metric} is {reported}"
        elif metrics.get("step") is not None and metrics["step"] < values.get("train.steps", base_steps):
            status = "stopped early"
        else:
            status = "finished"
        outcomes.append(TrialOutcome(trial_id, values, value, metrics.get("step"), status))
    sign = -1 if mode == "max" else 1
    return sorted(outcomes, key=lambda o: (o.metric is None, sign * o.metric if o.metric is not None else 0.0))


def config_of_trial(result) -> dict:
    """A trial's values. A trial restored from an earlier session that failed before reporting
    has no `config` on its result (Ray 2.60): they are then read from the params.json Tune wrote
    in the trial's folder when it started."""
    if result.config is not None:
        return result.config
    with result.filesystem.open_input_stream(f"{result.path}/params.json") as stream:
        return json.loads(stream.read().decode())


def _short_error(error: BaseException) -> str:
    """What went wrong in a trial: a user error's type and the first clause of its message
    (Tune wraps it in a RayTaskError that is also an instance of it); else the last line."""
    cause = getattr(error, "cause", error)  # the trial's own error, not the wrapper's traceback
    if isinstance(cause, DistmetaError):
        return f"{type(cause).__name__}: {str(cause).split(' (')[0].split(';')[0]}"[:120]
    return (str(error).strip().splitlines() or [type(error).__name__])[-1][:120]


def ranked_table(ranked: list[TrialOutcome], space: SearchSpace, metric: str) -> str:
    headers = ["rank", "trial", *space.paths, metric, "steps", "status"]
    rows = [
        [
            str(i + 1),
            o.trial_id,
            *[_fmt(o.values[p]) for p in space.paths],
            _fmt(o.metric) if o.metric is not None else "-",
            str(o.steps or "-"),
            o.status,
        ]
        for i, o in enumerate(ranked)
    ]
    return column_table(headers, rows)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _write_outputs(
    folder: Location, base: Config, space: SearchSpace, ranked: list[TrialOutcome], metric: str, mode: str, wall: float
) -> Location | None:
    folder.mkdir()
    records = [
        {"rank": i + 1, "trial": o.trial_id, **o.values, metric: o.metric, "steps": o.steps, "status": o.status}
        for i, o in enumerate(ranked)
    ]
    (folder / "results.json").write_text(
        json.dumps({"metric": metric, "mode": mode, "wall_time_s": wall, "trials": records}, indent=2)
    )
    _write_csv(folder / "results.csv", records)
    (folder / "search.png").write_with(lambda file: plot_search(file, space, ranked, metric))
    usable = [o for o in ranked if o.metric is not None]
    if not usable:
        return None
    best_path = folder / "best_config.yaml"
    # the base config with the best values, its own checkpoint interval kept
    save_config(with_values(base, usable[0].values), best_path)
    return best_path


def _write_csv(path: Location, records: list[dict]) -> None:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(records[0]) if records else ["rank"])
    writer.writeheader()
    writer.writerows(records)
    path.write_text(text.getvalue())
