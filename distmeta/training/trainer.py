"""Single-process meta-training: the loop, and the per-step work a Ray worker also calls.

One meta-step is: sample this step's tasks, compute their summed meta-gradient
(`compute_meta_gradient`), check it is finite, average and apply it with the
meta-optimiser (`apply_meta_gradient`). A distributed worker does the same with
its share of the tasks and one all-reduce between the two halves.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from distmeta.algorithms import Params
from distmeta.conditioning import validation_conditioning
from distmeta.config import Config, TrainConfig, default_run_dir, replace, save_config
from distmeta.errors import NonFiniteLossError
from distmeta.evaluation import EvalResult, evaluate
from distmeta.execution import BatchGradient
from distmeta.experiment import Experiment, build_experiment
from distmeta.host_memory import keep_freed_memory
from distmeta.storage import Location, as_path, location
from distmeta.tasks import TaskBatch, sample_tasks
from distmeta.training.checkpoint import check_resumable, newest_readable_checkpoint, save_checkpoint
from distmeta.training.knowledge_sample import record_step_sample
from distmeta.training.prefetch import BatchPrefetcher, prefetches
from distmeta.training.progress import ProgressLog, format_duration, summary_table
from distmeta.training.stopping import StopRules

if TYPE_CHECKING:  # a distributed worker's; the loop itself needs no collective
    from distmeta.runtime.agreement import RankFailure


@dataclass
class TrainState:
    """What changes during training: meta-parameters, optimiser, steps done."""

    meta_params: Params
    optimizer: torch.optim.Optimizer
    step: int = 0
    history: list[dict] = field(default_factory=list)


class MetaOptimizerState(Protocol):
    """What a meta-optimiser step changes: this trainer's `TrainState`, and the learned-optimiser
    runs' `RunState`."""

    meta_params: Params
    optimizer: torch.optim.Optimizer
    step: int


class TrainedRun(Protocol):
    """What `train_loop` trains: an `Experiment`, or a learned-optimiser run's `OptimizerRun`
    (the loop reads only the config; the functions it is given do the work)."""

    config: Config


class LoopState(MetaOptimizerState, Protocol):
    """What `train_loop` moves on: a `TrainState` or a learned-optimiser run's `RunState`."""

    history: list[dict]


def make_optimizer(config: Config, meta_params: Params) -> torch.optim.Optimizer:
    tensors = list(meta_params.values())
    if config.train.meta_optimizer == "sgd":
        return torch.optim.SGD(tensors, lr=config.train.meta_lr)
    return torch.optim.Adam(tensors, lr=config.train.meta_lr)


def initial_state(experiment: Experiment, checkpoint: dict | None = None) -> TrainState:
    """Fresh meta-parameters, or those of `checkpoint` with its optimiser state and step."""
    if checkpoint is None:
        params = experiment.initial_meta_parameters()
        return TrainState(params, make_optimizer(experiment.config, params))
    params = {name: value.to(experiment.device) for name, value in checkpoint["meta_parameters"].items()}
    optimizer = make_optimizer(experiment.config, params)
    optimizer.load_state_dict(checkpoint["optimizer"])  # moves the (CPU) state to the parameters' device
    return TrainState(params, optimizer, checkpoint["step"])


def meta_batch(experiment: Experiment, step: int, indices: range | None = None) -> TaskBatch:
    """The tasks of `step` (all of them, or the `indices` of one worker's share), on the device."""
    return sampled_tasks(experiment, step, indices).to(experiment.device)


def sampled_tasks(experiment: Experiment, step: int, indices: range | None = None) -> TaskBatch:
    """`meta_batch` on the CPU, where the tasks are drawn."""
    config = experiment.config
    indices = indices if indices is not None else range(config.train.meta_batch_size)
    return sample_tasks(experiment.tasks("train"), config.seed, "train", step, indices)


@contextmanager
def prefetched_tasks(experiment: Experiment, indices: range | None, end_step: int) -> Iterator[BatchPrefetcher | None]:
    """Steps' tasks drawn a step ahead in a background thread where `train.prefetch` says so
    (`training.prefetch`), up to `end_step`; None: each step samples its own, in line.
    The thread stops when the block ends, however it ends."""
    if not prefetches(experiment.config.train.prefetch, experiment.device):
        yield None
        return
    with BatchPrefetcher(lambda step: sampled_tasks(experiment, step, indices), experiment.device, end_step) as ahead:
        yield ahead


def compute_meta_gradient(experiment: Experiment, meta_params: Params, batch: TaskBatch) -> BatchGradient:
    return experiment.meta_gradient(meta_params, batch)


def flat(grad_sum: Params, meta_loss: torch.Tensor) -> torch.Tensor:
    """The gradient and the loss in one flat buffer, for `check_finite`."""
    return torch.cat([g.reshape(-1) for g in grad_sum.values()] + [meta_loss.reshape(-1)])


def check_finite(step: int, task_seed: int, meta_loss: torch.Tensor, values: torch.Tensor) -> None:
    """Stop before the update (and any checkpoint) when the loss or the gradient is NaN or infinite.

    `values`: one flat buffer holding the gradient and the loss (the all-reduce's, or `flat`'s),
    so that a GPU is waited for once per step, not once per parameter tensor.
    """
    if not bool(torch.isfinite(values).all()):
        raise NonFiniteLossError(step, task_seed, meta_loss.item())


def meta_lr_at(train: TrainConfig, step: int) -> float:
    """The meta-learning rate of update `step` (0-based): a function of the step alone,
    so a resumed run continues the schedule without any scheduler state."""
    if train.meta_lr_schedule == "constant":
        return train.meta_lr
    return 0.5 * train.meta_lr * (1 + math.cos(math.pi * min(step, train.steps) / train.steps))


def apply_meta_gradient(state: TrainState, train: TrainConfig, grad_sum: Params, num_tasks: int) -> None:
    """One meta-optimiser step on the mean meta-gradient over `num_tasks` tasks, clipped to a
    global norm of `train.meta_grad_clip` when set."""
    mean_grad = {name: value / num_tasks for name, value in grad_sum.items()}
    take_meta_step(state, train, mean_grad, train.meta_grad_clip)


def take_meta_step(state: MetaOptimizerState, train: TrainConfig, mean_grad: Params, clip: float) -> None:
    """The meta-optimiser's step on `mean_grad` (its tensors become the gradients, clipped in
    place to a global norm of `clip`; 0: no clip) at the scheduled rate.
    Every rank holds the same all-reduced gradient, so every rank clips alike and the replicas
    stay equal."""
    for name, value in state.meta_params.items():
        value.grad = mean_grad[name]
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(state.meta_params.values(), clip)
    for group in state.optimizer.param_groups:
        group["lr"] = meta_lr_at(train, state.step)
    state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    state.step += 1


@dataclass(frozen=True)
class StepMetrics:
    """Means over the whole meta-batch of one step."""

    meta_loss: float
    score: float
    tasks: int


def meta_step(
    experiment: Experiment,
    state: TrainState,
    run_dir: Path | Location | None = None,
    batches: BatchPrefetcher | None = None,
) -> StepMetrics:
    """Sample, differentiate, check and apply one meta-step (all tasks in this process); with
    `run_dir`, record the step's sample of tasks in its knowledge base (train.knowledge_every);
    with `batches`, the step's tasks are the ones it drew ahead (the same tasks)."""
    batch = batches.batch(state.step) if batches is not None else meta_batch(experiment, state.step)
    result = compute_meta_gradient(experiment, state.meta_params, batch)
    meta_loss = result.losses.mean()
    check_finite(state.step, batch.seed, meta_loss, flat(result.grad_sum, meta_loss))
    apply_meta_gradient(state, experiment.config.train, result.grad_sum, result.num_tasks)
    if run_dir is not None:
        record_step_sample(
            experiment,
            state.meta_params,
            state.step,
            batch,
            range(experiment.config.train.meta_batch_size),
            run_dir,
            "train",
        )
    return StepMetrics(meta_loss.item(), result.scores.mean().item(), result.num_tasks)


@dataclass
class TrainResult:
    """What a run ended with, in one process (`train`) or on Ray (`runtime.launcher.train_distributed`)."""

    run_dir: Path | Location
    """The run's folder: a `Location` when it is in a bucket (`distmeta.storage`)."""
    meta_params: Params
    steps: int
    test: EvalResult | None
    summary: dict


def train(config: Config, print_fn=print, final_eval: bool = True) -> TrainResult:
    """Meta-train as the config says, resuming from `train.run_dir` if it holds checkpoints."""
    # Both kinds of run: the allocator a Ray worker has (`runtime.worker.start_worker`), so that
    # an in-process run times as one worker does. A learned optimiser's unroll tensors are small,
    # so for those runs it saves page faults, not time.
    keep_freed_memory()
    if config.learns_update_rule:
        from distmeta.learned_optimizer_runs.training import train_in_process

        return train_in_process(config, print_fn, final_eval)
    if not config.train.run_dir:
        config = replace(config, train={"run_dir": default_run_dir(config)})
    run_dir = location(config.train.run_dir)  # a local folder or a bucket (`distmeta.storage`)
    experiment = build_experiment(config)
    experiment.meta_gradient.print_fn = print_fn  # the compile decision goes where the run's lines go
    checkpoint = _checkpoint_to_resume(run_dir, config, print_fn)
    state = initial_state(experiment, checkpoint)
    run_dir.mkdir()
    save_config(config, run_dir / "config.yaml")
    print_fn(
        f"run directory {run_dir}; device {experiment.device}; "
        f"inner loops: {experiment.strategy} ({experiment.strategy_reason})"
    )
    started = time.perf_counter()
    start_step = state.step
    progress = ProgressLog(run_dir, config.train.steps, config.metric, print_fn)
    experiment.meta_gradient.plan(config.train.steps - state.step)
    with prefetched_tasks(experiment, None, config.train.steps) as batches:
        train_loop(
            experiment,
            state,
            progress,
            functools.partial(meta_step, run_dir=run_dir, batches=batches),
            _save_to_run_dir(experiment, run_dir),
        )
    wall = time.perf_counter() - started
    test = evaluate(experiment, state.meta_params, "test") if final_eval else None
    summary = run_summary(
        config,
        state.step,
        state.step - start_step,
        wall,
        [str(experiment.device)],
        experiment.strategy,
        state.history[-1] if state.history else {},
        test,
        workers=1,
    )
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print_fn(summary_table(summary_rows(summary)))
    return TrainResult(as_path(run_dir), state.meta_params, state.step, test, summary)


def _checkpoint_to_resume(run_dir: Location, config: Config, print_fn) -> dict | None:
    checkpoint = newest_readable_checkpoint(run_dir)
    if checkpoint is None:
        return None
    check_resumable(checkpoint, config)
    print_fn(
        f"resuming from {checkpoint['path']} (step {checkpoint['step']} of {config.train.steps}); "
        f"steps after it were not saved and run again"
    )
    return checkpoint


def same_on_every_rank(decision: bool) -> bool:
    """One process: the leader's decision is every rank's."""
    return decision


def local_validation(experiment: Experiment, meta_params: Params) -> EvalResult:
    """One process validates on all of `train.val_tasks` itself."""
    return evaluate(experiment, meta_params, "val", experiment.config.train.val_tasks)


def leader_work(leader_failure: RankFailure | None) -> AbstractContextManager:
    """Where the leader's own work (logging) keeps a user error for the ranks to agree on."""
    return leader_failure.catching() if leader_failure is not None else nullcontext()


def train_loop(
    run: TrainedRun,
    state: LoopState,
    progress: ProgressLog | None,
    step_fn: Callable[[Any, Any], StepMetrics] = meta_step,
    checkpoint_fn: Callable[[Any], None] | None = None,
    leader_failure: RankFailure | None = None,
    leader_decision: Callable[[bool], bool] = same_on_every_rank,
    validation: Callable[[Any, Params], EvalResult] = local_validation,
    conditioning: Callable[[Any, Params], dict[str, float]] = validation_conditioning,
) -> None:
    """Meta-steps until `train.steps` (or an early stop), with logs, validation and checkpoints
    at their intervals: the schedule of every run, few-shot or learned optimiser (whose
    `step_fn`, `validation` and `conditioning` are its own; the defaults are one process's
    few-shot ones). Each function is called with `run` and `state` (or its meta-parameters).

    A Ray worker runs this too, with its own `step_fn` (its share of the tasks and
    an all-reduce), `checkpoint_fn` (called on every rank, as Ray's report must
    be), `validation` and `conditioning` (its share of the validation tasks, gathered on
    every rank, so that every rank has the same result); only the leader, the one given `progress`,
    logs. A user error in that logging is kept in `leader_failure` when given, for the
    ranks to agree on at their next collective (see `runtime.agreement`), rather than
    raised at once. Stop rules (`training.stopping`) are decided on every rank from the
    same validation, but the clock of `train.time_limit_minutes` is the leader's:
    `leader_decision` gives its reading to every rank (a broadcast on Ray), so that all of
    them validate, checkpoint and stop after the same step.
    """
    train = run.config.train
    start_step = state.step
    stopping = StopRules(train)
    window: list[StepMetrics] = []
    while state.step < train.steps:
        window.append(step_fn(run, state))
        step, last = state.step, state.step == train.steps
        scheduled_validation = bool(train.val_every and step % train.val_every == 0) or last
        log_point = scheduled_validation or step % train.log_every == 0
        if progress is not None:
            with leader_work(leader_failure):
                progress.count_tasks(window[-1].tasks)
        stop = False
        if log_point:
            out_of_time = stopping.out_of_time()
            if stopping.timed and not last:
                out_of_time = leader_decision(out_of_time)
            # a run that stops ends validated
            val = validation(run, state.meta_params).to_dict() if scheduled_validation or out_of_time else None
            # task-conditioned algorithms: the spread of what they generate, so that collapse shows
            spread = conditioning(run, state.meta_params) if val is not None else {}
            reason = stopping.reason(val, out_of_time)
            stop = reason is not None and not last
            if progress is not None:
                with leader_work(leader_failure):
                    extra = dict[str, float | str](spread)
                    if reason is not None:
                        extra["stopped"] = reason
                    loss = sum(m.meta_loss for m in window) / len(window)
                    score = sum(m.score for m in window) / len(window)
                    seconds_left = 0.0 if stop else stopping.seconds_left()
                    record = progress.log_interval(step, start_step, loss, score, val, extra, seconds_left)
                    state.history.append(record)
            window = []
        if checkpoint_fn is not None and (
            (train.checkpoint_every and step % train.checkpoint_every == 0) or last or stop
        ):
            checkpoint_fn(state)
        if stop:
            return


def _save_to_run_dir(experiment: Experiment, run_dir: Location) -> Callable[[TrainState], None]:
    def save(state: TrainState) -> None:
        save_checkpoint(
            run_dir,
            state.step,
            experiment.config,
            state.meta_params,
            state.optimizer.state_dict(),
            state.history[-1] if state.history else {},
        )

    return save


def run_summary(
    config: Config,
    steps: int,
    steps_run: int,
    wall: float,
    devices: list[str],
    inner_loops: str,
    final_train: dict,
    test: EvalResult | None,
    **extra,
) -> dict:
    """What `summary.json` holds, for a single-process run and a distributed one alike.

    `wall_time_s` is the whole command (a Ray cluster's and its workers' start-up
    included); `tasks_per_s` is the training loop's own rate (validation included),
    from its last log line, as the progress lines show it.
    """
    return {
        "task": config.task.name,
        "algorithm": config.algorithm.name,
        "model": config.model_name,
        "steps": steps,
        "steps_this_session": steps_run,
        "wall_time_s": wall,
        "tasks_per_s": final_train.get("mean_tasks_per_s") or _rate(steps_run * config.train.meta_batch_size, wall),
        **extra,
        "devices": devices,
        "inner_loops": inner_loops,
        "final_train": final_train,
        "test": test.to_dict() if test else None,
    }


def _rate(count: int, seconds: float) -> float | None:
    return count / seconds if seconds > 0 else None


def summary_rows(summary: dict) -> list[tuple[str, str]]:
    rows = [
        ("run", f"{summary['task']} / {summary['algorithm']} / {summary['model']}"),
        ("steps", str(summary["steps"])),
        ("wall time", format_duration(summary["wall_time_s"])),
        (
            f"{summary['final_train'].get('rate_unit', 'tasks')}/s",
            f"{summary['tasks_per_s']:,.0f}" if summary["tasks_per_s"] else "-",
        ),
        ("device", ", ".join(summary["devices"]) + f" ({summary['inner_loops']})"),
    ]
    for key, value in summary["final_train"].items():
        if key.startswith("val_") and not key.endswith("ci95"):
            rows.append((key.replace("_", " "), f"{value:.4f}"))
    if summary["test"]:
        rows.append(("meta-test", str(EvalResult(**summary["test"]))))
    return rows
