"""A trained learned optimiser, as `distmeta.load(run)` returns it for a learned-optimiser run.

trained = distmeta.load("runs/quadratic-lstm")
optimizer = trained.optimizer(model.parameters())   # a torch.optim.Optimizer
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from distmeta.algorithms.update_rules import Params, UpdateRule
from distmeta.config import Config
from distmeta.learned_optimizers.optimizer import LearnedOptimizer
from distmeta.learned_optimizers.rules import make_rule


class TrainedOptimizer:
    """A run's learned update rule at its trained meta-parameters (on the CPU)."""

    def __init__(self, config: Config, meta_params: Params, step: int):
        self.config = config
        self.rule: UpdateRule = make_rule(config.algorithm.learned_optimizer.rule)
        self.meta_params = {name: value.detach().cpu() for name, value in meta_params.items()}
        self.step = step
        """Meta-steps it was trained for."""

    def optimizer(self, params: Iterable[torch.Tensor] | Iterable[dict]) -> LearnedOptimizer:
        """A `torch.optim.Optimizer` that updates `params` (a model's parameters, or parameter
        groups) with the trained rule; its meta-parameters follow each parameter to its
        device and dtype, so a model on a GPU is updated there."""
        return LearnedOptimizer(params, self.rule, self.meta_params)

    def bound_rule(self) -> UpdateRule:
        """The rule bound to the trained meta-parameters, for functional use (`rule.update`)."""
        return self.rule.bind(self.meta_params)

    def __repr__(self) -> str:
        return (
            f"TrainedOptimizer({self.config.algorithm.learned_optimizer.rule} on {self.config.task.name}, "
            f"{self.step} meta-steps)"
        )
