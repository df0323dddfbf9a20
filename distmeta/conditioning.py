"""The spread across tasks of what a task-conditioned algorithm generates: collapse, measured.

MMAML's encoder, ALFA's network (`MetaAlgorithm.task_conditioning`) output one vector per
task. A generator that has collapsed outputs the same vector for every task: its spread
across tasks is ~0 while its values need not be. Each validation records both, so that
metrics.jsonl and TensorBoard show it:

- `conditioning_std`: the standard deviation across tasks of each output coordinate,
  averaged over coordinates;
- `conditioning_mean_abs`: the mean absolute output (the scale the spread is relative to).

On Ray each rank computes the outputs of its share of the validation tasks, gathered on every
rank (`runtime.shared_evaluation.shared_conditioning`), as the validation itself is.
"""

from __future__ import annotations

import torch

from distmeta.algorithms import Params
from distmeta.experiment import Experiment
from distmeta.tasks import sample_tasks


def task_conditioning_outputs(
    experiment: Experiment, meta_params: Params, split: str, tasks: int | range
) -> torch.Tensor | None:
    """(tasks, outputs): the conditioning vector of tasks 0..tasks-1 of `split` (or of the task
    indices `tasks`: a rank's share), those an evaluation adapts to; None for an algorithm with
    nothing task-conditioned, or no tasks."""
    indices = range(tasks) if isinstance(tasks, int) else tasks
    if not indices:
        return None
    config = experiment.config
    algorithm, meta_params = experiment.algorithm_for(split, meta_params)
    algorithm = algorithm.using_autograd(own_model=False)

    def outputs_of(some: range) -> list[torch.Tensor | None]:
        batch = sample_tasks(experiment.tasks(split), config.seed, split, 0, some).to(experiment.device)
        return [
            algorithm.task_conditioning(meta_params, batch.support_x[i], batch.support_y[i]) for i in range(len(batch))
        ]

    first = outputs_of(indices[:1])[0]
    if first is None:  # asked of one task only: most algorithms condition nothing
        return None
    rest = outputs_of(indices[1:]) if len(indices) > 1 else []
    # the algorithm, not the task, decides whether there is conditioning: the rest have it too
    conditioned = [first, *(output for output in rest if output is not None)]
    return torch.stack([output.detach().cpu() for output in conditioned])


def conditioning_spread(outputs: torch.Tensor) -> dict[str, float]:
    """{conditioning_std, conditioning_mean_abs} of (tasks, outputs)."""
    outputs = outputs.double()
    std = outputs.std(dim=0) if len(outputs) > 1 else torch.zeros(outputs.shape[1:], dtype=outputs.dtype)
    return {"conditioning_std": std.mean().item(), "conditioning_mean_abs": outputs.abs().mean().item()}


def validation_spread(shares: list[torch.Tensor | None]) -> dict[str, float]:
    """The spread over the validation tasks of the outputs of each share of them (in task order),
    keyed `val_conditioning_*`; {} when nothing is conditioned."""
    outputs = [share for share in shares if share is not None]
    if not outputs:
        return {}
    return {f"val_{key}": value for key, value in conditioning_spread(torch.cat(outputs)).items()}


def validation_conditioning(experiment: Experiment, meta_params: Params) -> dict[str, float]:
    """One process: the spread on all `train.val_tasks` validation tasks (see validation_spread)."""
    tasks = experiment.config.train.val_tasks
    return validation_spread([task_conditioning_outputs(experiment, meta_params, "val", tasks)])
