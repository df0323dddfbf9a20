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


def task_conditioning_outputs(
    experiment: Experiment, meta_params: Params, split: str, num_tasks: int
) -> torch.Tensor | None:
    """(tasks, outputs): the conditioning vector of tasks 0..num_tasks-1 of `split` (those an
    evaluation adapts to); None for an algorithm with nothing task-conditioned."""
    config = experiment.config
    algorithm, meta_params = experiment.algorithm_for(split, meta_params)
    algorithm = algorithm.using_autograd(own_model=False)

    def outputs_of(indices: range) -> list[torch.Tensor | None]:
        batch = sample_tasks(experiment.tasks(split), config.seed, split, 0, indices).to(experiment.device)
        return [
            algorithm.task_conditioning(meta_params, batch.support_x[i], batch.support_y[i]) for i in range(len(batch))
        ]

    first = outputs_of(range(1))[0]
    if first is None:  # asked of one task only: most algorithms condition nothing
        return None
    rest = outputs_of(range(1, num_tasks)) if num_tasks > 1 else []
    # the algorithm, not the task, decides whether there is conditioning: the rest have it too
    conditioned = [first, *(output for output in rest if output is not None)]
    return torch.stack([output.detach().cpu() for output in conditioned])


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
