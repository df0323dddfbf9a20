"""Hand-designed optimisers as update rules: the baselines a learned optimiser must beat.

Written as `UpdateRule`s (explicit state, no in-place ops), so that a baseline runs on an
optimisee exactly as a learned rule does; their formulas are torch.optim's (SGD with
momentum and dampening 0, RMSprop without centring, Adam with bias correction).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from distmeta.algorithms.update_rules import Params, RuleState, UpdateRule


def _zeros(params: Params) -> Params:
    return {name: torch.zeros_like(value) for name, value in params.items()}


@dataclass(frozen=True)
class Momentum(UpdateRule):
    """v <- mu v + g; theta <- theta - lr v (torch.optim.SGD with momentum)."""

    learning_rate: float
    momentum: float = 0.9

    def init(self, params: Params) -> RuleState:
        return {"velocity": _zeros(params)}

    def update(self, grads: Params, state: RuleState, params: Params) -> tuple[Params, RuleState]:
        velocity = {name: self.momentum * state["velocity"][name] + grads[name] for name in params}
        return {name: params[name] - self.learning_rate * velocity[name] for name in params}, {"velocity": velocity}


@dataclass(frozen=True)
class RMSprop(UpdateRule):
    """s <- rho s + (1 - rho) g^2; theta <- theta - lr g / (sqrt(s) + eps) (torch.optim.RMSprop)."""

    learning_rate: float
    decay: float = 0.99
    eps: float = 1e-8

    def init(self, params: Params) -> RuleState:
        return {"square": _zeros(params)}

    def update(self, grads: Params, state: RuleState, params: Params) -> tuple[Params, RuleState]:
        square = {name: self.decay * state["square"][name] + (1 - self.decay) * grads[name].square() for name in params}
        new = {
            name: params[name] - self.learning_rate * grads[name] / (square[name].sqrt() + self.eps) for name in params
        }
        return new, {"square": square}


@dataclass(frozen=True)
class Adam(UpdateRule):
    """Adam (Kingma and Ba, 2015) with bias correction, as torch.optim.Adam."""

    learning_rate: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def init(self, params: Params) -> RuleState:
        any_value = next(iter(params.values()))
        return {"first": _zeros(params), "second": _zeros(params), "count": any_value.new_zeros(())}

    def update(self, grads: Params, state: RuleState, params: Params) -> tuple[Params, RuleState]:
        count = state["count"] + 1
        first = {name: self.beta1 * state["first"][name] + (1 - self.beta1) * grads[name] for name in params}
        second = {name: self.beta2 * state["second"][name] + (1 - self.beta2) * grads[name].square() for name in params}
        first_correction, second_correction = 1 - self.beta1**count, 1 - self.beta2**count
        new = {
            name: params[name]
            - self.learning_rate
            * (first[name] / first_correction)
            / ((second[name] / second_correction).sqrt() + self.eps)
            for name in params
        }
        return new, {"first": first, "second": second, "count": count}
