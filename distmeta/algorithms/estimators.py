"""Meta-gradient estimators: how the outer gradient of an inner problem is obtained.

Every estimator returns the same record, `MetaGradient(mean_loss, grads, unroll_state,
info)` (learned_optimization's `GradientEstimatorOut`), whatever it does inside:

- `Unrolled`: differentiate the query loss through the whole adaptation; second order
  (MAML) or first order (the inner gradients taken as constants: first-order MAML).
- `ReptileDifference`: no differentiation of the query loss; theta - phi, the distance
  the adaptation moved the parameters (Reptile).
- over an unroll whose state persists from one meta-step to the next:
  `distmeta.algorithms.truncated` (truncated backprop, antithetic ES, PES).

`estimate(problem, meta_params, unroll_state, seed)` is the one signature. The estimators
here take a `TaskProblem` (one task's adaptation, which starts afresh on every call, so
`unroll_state` is empty in and out); the truncated ones take an `Unroll` and carry its
state. `seed` picks the noise of estimators that draw any.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import torch
from torch.func import grad

Params = dict[str, torch.Tensor]


class MetaGradient(NamedTuple):
    """What every estimator returns (a NamedTuple, so that torch.func.vmap can return it)."""

    mean_loss: torch.Tensor
    """The meta-loss the gradient is of (detached), e.g. the query loss after adaptation."""
    grads: Params
    """The estimated meta-gradient, one entry per meta-parameter."""
    unroll_state: dict[str, Any]
    """The state to carry to the next meta-step ({} when nothing persists)."""
    info: dict[str, torch.Tensor]
    """Anything else measured on the way (detached), e.g. {"score": accuracy or mse}."""


class TaskProblem(Protocol):
    """One task's adaptation, as the per-task estimators see it (a `MetaAlgorithm` bound to a task)."""

    autograd: bool
    """Differentiate with torch.autograd (loops, threads) rather than torch.func (vmap)."""

    def meta_loss(self, meta_params: Params, differentiable: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The query loss after adaptation (inner gradients in the graph when `differentiable`),
        and detached info ({"score": ...})."""

    def adapted_parameters(self, meta_params: Params) -> Params:
        """The parameters after meta-training's adaptation, detached."""

    def evaluate(self, meta_params: Params, adapted: Params) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The query loss of `adapted`, and detached info, outside any graph."""


class MetaGradientEstimator:
    """Base class of estimators; see the module docstring for the contract."""

    def estimate(self, problem, meta_params: Params, unroll_state: dict[str, Any], seed: int = 0) -> MetaGradient:
        raise NotImplementedError


@dataclass(frozen=True)
class Unrolled(MetaGradientEstimator):
    """d meta_loss / d meta-parameters through the whole adaptation.

    `second_order=False` keeps the meta-parameters' direct paths (the start point, a
    rule's rates) but treats the inner gradients as constants: first-order MAML.
    """

    second_order: bool = True

    def estimate(
        self, problem: TaskProblem, meta_params: Params, unroll_state: dict[str, Any], seed: int = 0
    ) -> MetaGradient:
        def loss_of(params: Params):
            loss, info = problem.meta_loss(params, self.second_order)
            return loss, (loss.detach(), info)

        if not problem.autograd:
            grads, (loss, info) = grad(loss_of, has_aux=True)(meta_params)
            return MetaGradient(loss, grads, unroll_state, info)
        leaves = {name: value.detach().requires_grad_(True) for name, value in meta_params.items()}
        with torch.enable_grad():
            loss, (loss_value, info) = loss_of(leaves)
            values = list(leaves.values())
            grads = torch.autograd.grad(loss, values, allow_unused=True)
        grads = {name: torch.zeros_like(v) if g is None else g for (name, v), g in zip(leaves.items(), grads)}
        return MetaGradient(loss_value, grads, unroll_state, info)


@dataclass(frozen=True)
class ReptileDifference(MetaGradientEstimator):
    """Reptile's meta-gradient theta - phi (Nichol et al., 2018): no derivative of the query loss.

    With plain SGD as meta-optimiser at rate eps this is theta <- theta + eps * (phi - theta).
    The query loss after adaptation is reported, not differentiated.
    """

    def estimate(
        self, problem: TaskProblem, meta_params: Params, unroll_state: dict[str, Any], seed: int = 0
    ) -> MetaGradient:
        adapted = problem.adapted_parameters(meta_params)
        grads = {name: meta_params[name] - adapted[name] for name in meta_params}
        loss, info = problem.evaluate(meta_params, adapted)
        return MetaGradient(loss, grads, unroll_state, info)
