"""The spread across tasks of what a task-conditioned algorithm generates: collapse, measured.

MMAML's encoder, ALFA's network (`MetaAlgorithm.task_conditioning`) output one vector per
task. A generator that has collapsed outputs the same vector for every task: its spread
across tasks is ~0 while its values need not be. Each validation records both, so that
metrics.jsonl and TensorBoard show it:

- `conditioning_std`: the standard deviation across tasks of each output coordinate,
  averaged over coordinates;
- `conditioning_mean_abs`: the mean absolute output (the scale the spread is relative to).
"""

from __future__ import annotations

import torch

from distmeta.algorithms import Params
from distmeta.experiment import Experiment
from distmeta.tasks import sample_tasks


def task_conditioning_outputs(experiment: Experiment, meta_params: Params, split: str,
                              num_tasks: int) -> torch.Tensor | None:
    """(tasks, outputs): the conditioning vector of tasks 0..num_tasks-1 of `split` (those an
    evaluation adapts to); None for an algorithm with nothing task-conditioned."""
    config = experiment.config
    batch = sample_tasks(experiment.tasks(split), config.seed, split, 0, range(num_tasks)).to(experiment.device)
    algorithm = experiment.algorithm.using_autograd(own_model=False)
    rows = []
    for task in range(len(batch)):
        support_x, support_y = batch.support_x[task], batch.support_y[task]
        output = algorithm.task_conditioning(meta_params, support_x, support_y)
        if output is None:
            return None
        rows.append(output.detach().cpu())
    return torch.stack(rows)


def conditioning_spread(outputs: torch.Tensor) -> dict[str, float]:
    """{conditioning_std, conditioning_mean_abs} of (tasks, outputs)."""
    outputs = outputs.double()
    std = outputs.std(dim=0) if len(outputs) > 1 else torch.zeros(outputs.shape[1:], dtype=outputs.dtype)
    return {"conditioning_std": std.mean().item(), "conditioning_mean_abs": outputs.abs().mean().item()}


def validation_conditioning(experiment: Experiment, meta_params: Params, num_tasks: int) -> dict[str, float]:
    """The spread on the validation tasks, keyed `val_conditioning_*`; {} when nothing is conditioned."""
    outputs = task_conditioning_outputs(experiment, meta_params, "val", num_tasks)
    if outputs is None:
        return {}
    return {f"val_{key}": value for key, value in conditioning_spread(outputs).items()}
