"""Evaluations whose tasks the ranks share: each adapts to its share, every rank gets the whole.

A validation during training (`train.val_tasks`, with the spread of what a task-conditioned
algorithm generates for them, or a learned optimiser's `eval_tasks` unrolls) and the final
meta-test (`eval.tasks`) adapt to many tasks; on rank 0 alone they would keep every other rank
waiting (about a fifth of a ProtoNets run's loop on Omniglot).
So each rank takes the tasks `share_of_meta_batch` gives it, by task index, and the per-task
results are gathered on every rank: every rank holds the same summary (and so takes the same
stop decision), equal to one process's over the same tasks. A user error on one rank is
agreed on in that same gather (`RankFailure.gathered`), so that no rank waits for another
that failed. Pure torch: no Ray.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

from distmeta.algorithms import Params
from distmeta.conditioning import task_conditioning_outputs, validation_spread
from distmeta.evaluation import EvalResult, summarise, task_results
from distmeta.experiment import Experiment
from distmeta.runtime.agreement import RankFailure
from distmeta.runtime.collective import share_of_meta_batch

T = TypeVar("T")


def shared_evaluation(
    experiment: Experiment,
    meta_params: Params,
    split: str,
    num_tasks: int,
    rank: int,
    world_size: int,
    failure: RankFailure,
) -> EvalResult:
    """Tasks 0..num_tasks-1 of `split`, this rank adapting to its share; call on every rank."""
    steps = experiment.algorithm.test_inner_steps
    everyone = gathered_shares(
        lambda share: task_results(experiment, meta_params, split, share, steps), num_tasks, rank, world_size, failure
    )
    losses = torch.cat([losses for losses, _ in everyone])
    scores = torch.cat([scores for _, scores in everyone])
    return summarise(experiment.config.metric, losses, scores, steps, split)


def gathered_shares(
    results_of: Callable[[range], T], num_tasks: int, rank: int, world_size: int, failure: RankFailure
) -> list[T]:
    """Every rank's `results_of` its share of tasks 0..num_tasks-1, in rank (so task) order, on
    every rank; call on every rank."""
    share = share_of_meta_batch(num_tasks, rank, world_size)
    mine = None
    with failure.catching():
        if not failure.failed:  # a rank that failed since the ranks last met only says so
            mine = results_of(share)
    return failure.gathered(mine)


def shared_conditioning(
    rank: int, world_size: int, failure: RankFailure
) -> Callable[[Experiment, Params], dict[str, float]]:
    """A `train_loop` conditioning: the spread of what a task-conditioned algorithm generates
    over `train.val_tasks` tasks, each rank computing its share's outputs."""

    def spread(experiment: Experiment, meta_params: Params) -> dict[str, float]:
        tasks = experiment.config.train.val_tasks
        shares = gathered_shares(
            lambda share: task_conditioning_outputs(experiment, meta_params, "val", share),
            tasks,
            rank,
            world_size,
            failure,
        )
        return validation_spread(shares)

    return spread


def shared_validation(rank: int, world_size: int, failure: RankFailure) -> Callable[[Experiment, Params], EvalResult]:
    """A `train_loop` validation: `train.val_tasks` tasks shared among the ranks."""

    def validate(experiment: Experiment, meta_params: Params) -> EvalResult:
        tasks = experiment.config.train.val_tasks
        return shared_evaluation(experiment, meta_params, "val", tasks, rank, world_size, failure)

    return validate
