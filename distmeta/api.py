"""The Python API: load a meta-trained checkpoint, adapt to a new task, predict.

    learner = distmeta.load("runs/omniglot-maml-.../")
    model = learner.adapt(support_x, support_y)   # e.g. one drawing per new character
    labels = model.predict(query_x)

For classification any number of ways works and the labels may be any values
(ints, strings): they are mapped to 0..N-1 and back. The algorithm re-sizes its
meta-parameters for another N (`MetaAlgorithm.meta_parameters_for_ways`): a MAML-family
head trained for N ways starts every class from the mean of the trained class rows, so
that adaptation alone tells them apart.

Whatever device the learner computes on, what it returns (outputs, values) is on
the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from distmeta.algorithms import MetaAlgorithm, Params, build_algorithm
from distmeta.config import Config
from distmeta.devices import resolve_device, usable_device
from distmeta.errors import DistmetaError
from distmeta.experiment import Experiment, build_experiment
from distmeta.models import build_model
from distmeta.training.checkpoint import checkpoint_config, load_checkpoint


@dataclass
class AdaptedModel:
    """A model adapted to one task; `predict` gives labels (classification) or values."""

    algorithm: MetaAlgorithm
    meta_params: Params
    adapted: Params
    classes: list | None
    """The support set's labels, sorted; output i is classes[i]. None for regression."""

    @torch.no_grad()
    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Raw outputs, on the CPU: logits over the task's classes, or regression values."""
        device = next(iter(self.meta_params.values())).device
        x = torch.as_tensor(x, dtype=torch.float32, device=device)
        return self.algorithm.predict(self.meta_params, self.adapted, x).cpu()

    def predict(self, x: torch.Tensor) -> Any:
        outputs = self.outputs(x)
        if self.classes is None:
            return outputs
        indices = outputs.argmax(dim=-1).tolist()
        return [self.classes[i] for i in indices]


class Learner:
    """Meta-trained parameters with the algorithm that adapts them."""

    def __init__(self, experiment: Experiment, meta_params: Params, step: int):
        self.experiment = experiment
        self.config: Config = experiment.config
        self.algorithm = experiment.algorithm
        self.device = experiment.device
        self.meta_params = meta_params
        self.step = step

    def adapt(self, support_x, support_y, steps: int | None = None) -> AdaptedModel:
        """Adapt to a task from its support set; `steps` defaults to algorithm.test_inner_steps."""
        steps = self.algorithm.test_inner_steps if steps is None else steps
        x = torch.as_tensor(support_x, dtype=torch.float32, device=self.device)
        if not self.config.is_classification:
            y = torch.as_tensor(support_y, dtype=torch.float32, device=self.device).reshape(len(x), -1)
            adapted = self._adapt(self.algorithm, self.meta_params, x, y, steps)
            return AdaptedModel(self.algorithm, self.meta_params, adapted, None)
        classes, y = _encode_labels(support_y)
        algorithm, params = self._for_ways(len(classes))
        adapted = self._adapt(algorithm, params, x, y.to(self.device), steps)
        return AdaptedModel(algorithm, params, adapted, classes)

    def _adapt(self, algorithm, params: Params, x, y, steps: int) -> Params:
        adapted = algorithm.adapt(params, x, y, steps, differentiable=False)
        return {name: value.detach() for name, value in adapted.items()}

    def _for_ways(self, ways: int):
        """The algorithm and meta-parameters for `ways` classes (the trained ones if equal)."""
        if ways == self.experiment.output_size:
            return self.algorithm, self.meta_params
        model = build_model(self.config, ways, self.config.task.omniglot.image_size).to(self.device)
        algorithm = build_algorithm(self.config.algorithm, model, True, ways)
        return algorithm, self.algorithm.meta_parameters_for_ways(self.meta_params, ways)


def _encode_labels(labels: Sequence) -> tuple[list, torch.Tensor]:
    values = labels.tolist() if isinstance(labels, torch.Tensor) else list(labels)
    classes = sorted(set(values), key=lambda v: (str(type(v)), v))
    if len(classes) < 2:
        raise DistmetaError(f"support_y: a classification task needs at least 2 classes, got {classes}")
    index = {label: i for i, label in enumerate(classes)}
    return classes, torch.tensor([index[v] for v in values], dtype=torch.long)


def load(checkpoint: str | Path, device: str | None = None):
    """A Learner from a checkpoint file or a run directory (its latest checkpoint); for a
    learned-optimiser run, a `TrainedOptimizer` (`.optimizer(model.parameters())`).

    `device`: cpu, cuda or auto; None: the checkpoint's `train.device` where this machine
    has it, else the CPU (a GPU-trained checkpoint runs on a laptop as it is). A learned
    optimiser follows the parameters it is given to their device instead.
    """
    payload = load_checkpoint(checkpoint)
    config = checkpoint_config(payload)
    if config.learns_update_rule:
        from distmeta.learned_optimizer_runs.trained import TrainedOptimizer

        return TrainedOptimizer(config, payload["meta_parameters"], payload["step"])
    chosen = resolve_device(device, field="device") if device else usable_device(config.train.device)[0]
    experiment = build_experiment(config, chosen, check_data=False)
    params = {name: value.to(experiment.device) for name, value in payload["meta_parameters"].items()}
    return Learner(experiment, params, payload["step"])
