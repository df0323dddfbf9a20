"""Meta-training a learned optimiser from the config: the run state, one rank's meta-step, the loop.

A meta-step moves each of the meta-batch's `train.meta_batch_size` persistent unrolls on by
one truncation. Each rank estimates the unrolls of its task indices (`share_of_meta_batch`;
the seed of unroll i at step t is `optimisee_seed(seed, "train", t, i)`, used for its fresh
task when its unroll starts afresh and for its ES / PES noise), sums their meta-gradients,
joins the one all-reduce of the step (`all_reduce_sum`), and every rank takes the same
update: the mean meta-gradient, clipped to `gradient_clip` global norm, one step of the
meta-optimiser. So N ranks give one rank's meta-gradient to float rounding, whatever N. A
non-finite meta-loss or meta-gradient stops every rank at once with `NonFiniteLossError`,
before the update and before any checkpoint.

Pure torch (the collective is torch.distributed, a no-op in one process): the in-process run
here and the Ray worker (`distmeta.runtime.optimizer_worker`) run the same step.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from distmeta.algorithms.update_rules import Params, UpdateRule
from distmeta.config import Config, default_run_dir, replace, save_config
from distmeta.errors import ConfigError
from distmeta.evaluation import EvalResult, mean_and_ci95
from distmeta.learned_optimizer_runs.settings import meta_training_settings, optimisee_family
from distmeta.learned_optimizer_runs.unroll_states import (
    KEY,
    UnrollState,
    all_unroll_states,
    describe_positions,
    unroll_states_of,
)
from distmeta.learned_optimizers.evaluation import loss_curves
from distmeta.learned_optimizers.meta_training import build_estimator, check_optimisee
from distmeta.learned_optimizers.rules import make_rule
from distmeta.learned_optimizers.unroll import OptimiseeUnroll
from distmeta.runtime.agreement import RankFailure
from distmeta.runtime.collective import all_reduce_sum, share_of_meta_batch
from distmeta.runtime.step import NoClock, StepClock
from distmeta.tasks.base import task_seed
from distmeta.tasks.optimisee import optimisee_seed
from distmeta.training.checkpoint import check_resumable, newest_readable_checkpoint, save_checkpoint
from distmeta.training.progress import ProgressLog, summary_table
from distmeta.training.trainer import (
    StepMetrics,
    TrainResult,
    check_finite,
    make_optimizer,
    run_summary,
    summary_rows,
    take_meta_step,
    train_loop,
)

UNIT = "unroll steps"
"""What a learned-optimiser run's progress lines count per second: optimisee steps of its unrolls."""


@dataclass
class OptimizerRun:
    """Everything a learned-optimiser config describes, built once (`build_run`)."""

    config: Config
    rule: UpdateRule
    """The unbound rule; its meta-parameters are the run's."""
    unroll: OptimiseeUnroll
    estimator: Any
    """A `MetaGradientEstimator` over the unroll (truncated backprop, ES or PES)."""

    @property
    def unrolls(self) -> int:
        return self.config.train.meta_batch_size

    @property
    def truncation_length(self) -> int:
        return self.config.algorithm.learned_optimizer.truncation_length


def build_run(config: Config) -> OptimizerRun:
    """The rule, unroll and estimator of `config`, after refusing an optimisee whose loss is
    not finite before any update (no optimiser could train it): on the driver, before any worker starts."""
    settings = meta_training_settings(config)
    family = optimisee_family(config, "train")
    try:
        check_optimisee(family, optimisee_seed(config.seed, "train", 0, 0))
    except ConfigError as error:
        raise ConfigError(f"task.{config.task.name}", str(error).split(": ", 1)[1]) from None
    rule = make_rule(settings.optimizer)
    unroll = OptimiseeUnroll(rule, family, settings.unroll_length, settings.loss_clip, settings.log_loss)
    return OptimizerRun(config, rule, unroll, build_estimator(settings))


@dataclass
class RunState:
    """What changes during meta-training: meta-parameters, optimiser, steps done, and the
    persistent unrolls of this rank's task indices."""

    meta_params: Params
    optimizer: torch.optim.Optimizer
    step: int = 0
    unrolls: dict[int, UnrollState] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)


def initial_meta_parameters(run: OptimizerRun) -> Params:
    """The rule's meta-parameters drawn from the run seed (as `meta_train` draws them)."""
    generator = torch.Generator().manual_seed(run.config.seed)
    return {name: value.requires_grad_(True) for name, value in run.rule.init_meta_parameters({}, generator).items()}


def initial_state(run: OptimizerRun, indices: range, checkpoint: dict | None = None) -> RunState:
    """Fresh meta-parameters and unrolls, or a checkpoint's, with the unrolls of `indices`."""
    if checkpoint is None:
        params = initial_meta_parameters(run)
        return RunState(params, make_optimizer(run.config, params))
    params = {name: value.clone().requires_grad_(True) for name, value in checkpoint["meta_parameters"].items()}
    optimizer = make_optimizer(run.config, params)
    optimizer.load_state_dict(checkpoint["optimizer"])
    return RunState(params, optimizer, checkpoint["step"], unroll_states_of(checkpoint, indices))


def rank_meta_step(
    run: OptimizerRun,
    state: RunState,
    rank: int,
    world_size: int,
    clock: StepClock | None = None,
    failure: RankFailure | None = None,
) -> StepMetrics:
    """This rank's unrolls each moved on by a truncation, one all-reduce, the shared update.

    Phases, in order: `meta_gradient`, `sync_wait`, `all_reduce`, `optimizer`. The metrics
    are over the whole meta-batch: the mean meta-loss of its truncations (also as the score),
    and as its `tasks` the optimisee steps its unrolls took.
    A user error on this rank (in this step, or kept in `failure` since the ranks last met,
    e.g. rank 0 failing to log) is not raised here at once: the all-reduce carries a flag
    saying so, and every rank raises it together (`runtime.agreement`), as the few-shot step does.
    """
    clock = clock or NoClock()
    failure = failure or RankFailure(rank)
    config = run.config
    grad_sum = {name: torch.zeros_like(value) for name, value in state.meta_params.items()}
    loss_sum, steps_sum = torch.zeros(()), torch.zeros(())
    with clock.phase("meta_gradient"), failure.catching():
        if not failure.failed:  # a rank that failed since the ranks last met only says so
            for index in share_of_meta_batch(run.unrolls, rank, world_size):
                seed = optimisee_seed(config.seed, "train", state.step, index)
                estimate = run.estimator.estimate(run.unroll, state.meta_params, state.unrolls.get(index, {}), seed)
                state.unrolls[index] = estimate.unroll_state
                for name in grad_sum:
                    grad_sum[name] += estimate.grads[name]
                loss_sum += estimate.mean_loss
                steps_sum += estimate.info["steps"]
    with clock.phase("sync_wait"):
        clock.wait_for_slowest_rank()
    with clock.phase("all_reduce"):
        failed = torch.tensor(1.0 if failure.failed else 0.0)
        grad_total, totals, reduced = all_reduce_sum(grad_sum, torch.stack([loss_sum, steps_sum, failed]))
    with clock.phase("optimizer"):
        if totals[2].item() > 0:
            failure.agree()  # raises, on every rank, the error of the lowest failing rank
        meta_loss = totals[0] / run.unrolls
        # every rank holds the same reduced values, so every rank stops here together
        check_finite(state.step, optimisee_seed(config.seed, "train", state.step, 0), meta_loss, reduced)
        apply_meta_gradient(run, state, {name: value / run.unrolls for name, value in grad_total.items()})
    return StepMetrics(meta_loss.item(), meta_loss.item(), int(totals[1].item()))


def apply_meta_gradient(run: OptimizerRun, state: RunState, mean_grad: Params) -> None:
    """One meta-optimiser step on the mean meta-gradient, clipped to `gradient_clip` global norm
    (as `meta_train` clips), at the scheduled rate; `mean_grad`'s tensors become the gradients."""
    clip = run.config.algorithm.learned_optimizer.gradient_clip
    take_meta_step(state, run.config.train, mean_grad, clip)


# ---------------------------------------------------------------- held-out tasks


def held_out_losses(run: OptimizerRun, meta_params: Params, split: str, tasks: range, steps: int) -> torch.Tensor:
    """Each task's full loss after `steps` steps of the trained rule: tasks `tasks` of the
    meta-test split, or for `split="val"` unseen tasks of the meta-train family."""
    config = run.config
    family = optimisee_family(config, "test" if split == "test" else "train")
    seeds = [task_seed(config.seed, split, 0, index) for index in tasks]
    rule = run.rule.bind({name: value.detach() for name, value in meta_params.items()})
    return loss_curves(rule, family, seeds, steps)[:, -1]


def summarise_losses(losses: torch.Tensor, steps: int, split: str) -> EvalResult:
    """Mean final loss with its 95% interval (a diverged task makes the mean inf)."""
    finite = torch.where(torch.isfinite(losses), losses, torch.full_like(losses, math.inf))
    mean, ci95 = mean_and_ci95(finite)
    return EvalResult("loss", mean, ci95, mean, losses.numel(), steps, split)


def unroll_losses(run: OptimizerRun, meta_params: Params, split: str, tasks: range) -> torch.Tensor:
    """Each of tasks `tasks`' final loss after one unroll of the trained rule: unseen meta-train
    tasks for `split="val"`, meta-test tasks for `"test"`. Empty for an empty share (a rank's
    when there are fewer tasks than ranks)."""
    if not tasks:
        return torch.empty(0)
    return held_out_losses(run, meta_params, split, tasks, run.config.algorithm.learned_optimizer.unroll_length)


def nothing_conditioned(run: OptimizerRun, meta_params: Params) -> dict[str, float]:
    """A `train_loop` conditioning: a learned optimiser generates nothing per task."""
    return {}


def unroll_evaluation(run: OptimizerRun, meta_params: Params, split: str) -> EvalResult:
    """The rule on all `eval_tasks` tasks of `split` in this process, one unroll each: "val"
    validates, "test" is the final meta-test (`distmeta eval` compares it with the baselines,
    and at a longer horizon)."""
    section = run.config.algorithm.learned_optimizer
    losses = unroll_losses(run, meta_params, split, range(section.eval_tasks))
    return summarise_losses(losses, section.unroll_length, split)


def local_validation(run: OptimizerRun, meta_params: Params) -> EvalResult:
    """A `train_loop` validation: one process validates the rule on all `eval_tasks` tasks itself."""
    return unroll_evaluation(run, meta_params, "val")


def checkpoint_payload(run: OptimizerRun, state: RunState) -> dict:
    """What a checkpoint adds to the meta-parameters and optimiser: every rank's unrolls by
    task index (gathered: call on every rank)."""
    return {KEY: all_unroll_states(state.unrolls)}


def train_in_process(config: Config, print_fn=print, final_eval: bool = True) -> TrainResult:
    """Meta-train as the config says in this process, resuming from `train.run_dir`'s checkpoint."""
    if not config.train.run_dir:
        config = replace(config, train={"run_dir": default_run_dir(config)})
    run_dir = Path(config.train.run_dir)
    run = build_run(config)
    checkpoint = checkpoint_to_resume(run_dir, config)
    indices = range(config.train.meta_batch_size)
    state = initial_state(run, indices, checkpoint)
    if checkpoint is not None:
        print_fn(resume_line(run, checkpoint))
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    print_fn(
        f"run directory {run_dir}; learned optimiser {config.model_name} on {config.task.name}, "
        f"{config.algorithm.learned_optimizer.estimator}, {run.unrolls} unroll(s) per meta-step; device cpu"
    )
    started, start_step = time.perf_counter(), state.step
    progress = ProgressLog(run_dir, config.train.steps, config.metric, print_fn, UNIT)

    def save(state: RunState) -> None:
        save_checkpoint(
            run_dir,
            state.step,
            config,
            state.meta_params,
            state.optimizer.state_dict(),
            state.history[-1] if state.history else {},
            checkpoint_payload(run, state),
        )

    with one_torch_thread():
        train_loop(
            run,
            state,
            progress,
            lambda run, state: rank_meta_step(run, state, 0, 1),
            save,
            validation=local_validation,
            conditioning=nothing_conditioned,
        )
    wall = time.perf_counter() - started
    test = unroll_evaluation(run, state.meta_params, "test") if final_eval else None
    summary = run_summary(
        config,
        state.step,
        state.step - start_step,
        wall,
        ["cpu"],
        "loop",
        state.history[-1] if state.history else {},
        test,
        workers=1,
    )
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print_fn(summary_table(summary_rows(summary)))
    return TrainResult(
        run_dir, {name: value.detach() for name, value in state.meta_params.items()}, state.step, test, summary
    )


@contextmanager
def one_torch_thread():
    """Inside: torch on one thread. An unroll's tensors are tiny: a second thread only waits on
    the first (on a loaded 2-core machine 20 meta-steps took 137 s of CPU with 2, 9 s with 1).
    A Ray worker gets its threads from `--cpus-per-worker` instead."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def checkpoint_to_resume(run_dir: Path, config: Config) -> dict | None:
    """The newest checkpoint that loads, checked against `config`: a newer one cut short is
    skipped with a warning naming it, as the few-shot trainer and the Ray workers do."""
    checkpoint = newest_readable_checkpoint(run_dir)
    if checkpoint is not None:
        check_resumable(checkpoint, config)
    return checkpoint


def resume_line(run: OptimizerRun, checkpoint: dict) -> str:
    """What a resumed run says: the step, and where its persistent unrolls continue."""
    return (
        f"resuming from {checkpoint['path']} (step {checkpoint['step']} of {run.config.train.steps}); "
        f"{unrolls_line(run.config, checkpoint)}; steps after it were not saved and run again"
    )


def unrolls_line(config: Config, checkpoint: dict) -> str:
    """Where a checkpoint's unrolls continue: "3 unroll(s) at optimisee steps 4, 4, 4 of 6 continue where they were"."""
    length = config.algorithm.learned_optimizer.unroll_length
    return f"{describe_positions(checkpoint.get(KEY) or {}, length)} continue where they were"
