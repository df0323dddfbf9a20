"""Meta-evaluation: adapt to many held-out tasks and report the mean with a 95% interval.

As in the MAML and ProtoNets papers: 600 or more tasks from the meta-test
split, accuracy (classification) or MSE (regression) on each task's query set
after adapting on its support set.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from distmeta.algorithms import Params
from distmeta.execution import batch_evaluation
from distmeta.experiment import Experiment
from distmeta.tasks import sample_tasks

Z_95 = 1.959964


@dataclass(frozen=True)
class EvalResult:
    metric: str
    """accuracy or mse."""
    mean: float
    ci95: float
    """Half-width of the 95% confidence interval of the mean (1.96 standard errors)."""
    loss: float
    tasks: int
    inner_steps: int
    split: str

    def __str__(self) -> str:
        if self.metric == "accuracy":
            value = f"{100 * self.mean:.2f}% +- {100 * self.ci95:.2f}%"
        else:
            value = f"{self.mean:.4f} +- {self.ci95:.4f}"
        return f"{self.split} {self.metric} {value} ({self.tasks} tasks, {self.inner_steps} inner steps)"

    def to_dict(self) -> dict:
        return asdict(self)


def mean_and_ci95(values: torch.Tensor) -> tuple[float, float]:
    values = values.double()
    if values.numel() < 2:
        return values.mean().item(), float("nan")
    return values.mean().item(), Z_95 * values.std().item() / math.sqrt(values.numel())


def evaluate(
    experiment: Experiment,
    meta_params: Params,
    split: str = "test",
    num_tasks: int | None = None,
    inner_steps: int | None = None,
    batch_size: int | None = None,
) -> EvalResult:
    """Adapt to tasks 0..num_tasks-1 of `split` (seeded by the run seed) and summarise.

    The same tasks whatever the batch size, so validations during training are comparable.
    """
    num_tasks = num_tasks or experiment.config.eval.tasks
    steps = experiment.algorithm.test_inner_steps if inner_steps is None else inner_steps
    losses, scores = task_results(experiment, meta_params, split, range(num_tasks), steps, batch_size)
    return summarise(experiment.config.metric, losses, scores, steps, split)


def task_results(
    experiment: Experiment, meta_params: Params, split: str, indices: range, steps: int, batch_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each task's query (loss, score), on the CPU, for tasks `indices` of `split`: a share of
    an evaluation that several workers split among them gives the numbers one would."""
    config = experiment.config
    batch_size = batch_size or config.eval.batch_size
    tasks = experiment.tasks(split)
    algorithm, meta_params = experiment.algorithm_for(split, meta_params)
    losses, scores = [torch.empty(0)], [torch.empty(0)]
    for start in range(indices.start, indices.stop, batch_size):
        chunk = range(start, min(start + batch_size, indices.stop))
        batch = sample_tasks(tasks, config.seed, split, 0, chunk).to(experiment.device)
        loss, score = batch_evaluation(
            algorithm, meta_params, batch, steps, experiment.strategy, experiment.vmap_chunk_size
        )
        losses.append(loss.detach().cpu())
        scores.append(score.detach().cpu())
    return torch.cat(losses), torch.cat(scores)


def summarise(metric: str, losses: torch.Tensor, scores: torch.Tensor, steps: int, split: str) -> EvalResult:
    """The mean score with its 95% interval over every task's (loss, score)."""
    mean, ci95 = mean_and_ci95(scores)
    return EvalResult(metric, mean, ci95, losses.mean().item(), scores.numel(), steps, split)
