"""An optimisee trained by an update rule, as an `Unroll` that the truncated estimators run.

Its state is everything a truncation continues from: the optimisee's parameters, the rule's
state, the task's data and the step count (which picks the minibatch). The loss of a step is
the training loss after that step's update, on that step's minibatch: the f(theta_t) of
Andrychowicz et al.'s meta-loss, so that a truncation's last loss sees all of its updates.

A learned optimiser early in meta-training may blow an optimisee up. As in the references,
the loss the estimators see is clipped at `loss_clip`, and a NaN counts as `loss_clip`:
one diverging unroll then bounds the meta-loss instead of making it NaN. With `log_loss`
the estimators see log(loss) instead (learned_optimization's tasks normalise their losses
likewise): a loss that falls by orders of magnitude along the unroll then weighs as much at
the end of the unroll as at its start.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import grad

from distmeta.algorithms.truncated import InnerState
from distmeta.algorithms.update_rules import Params, UpdateRule
from distmeta.tasks.optimisee import OptimiseeFamily

LOG_FLOOR = 1e-12
"""log_loss takes the log of max(loss, LOG_FLOOR): an exact zero must not give -inf."""


def clipped_loss(loss: torch.Tensor, clip: float) -> torch.Tensor:
    """min(loss, clip), and clip for a NaN or infinite loss."""
    return torch.where(torch.isfinite(loss), loss.clamp(max=clip), torch.full_like(loss, clip))


@dataclass(frozen=True)
class OptimiseeUnroll:
    """`length` steps of `rule` (its meta-parameters are the unroll's) on a task of `family`.

    With `second_order=False` (the default, Andrychowicz et al.'s simplification) the
    optimisee's gradients are constants to the outer derivative.
    """

    rule: UpdateRule
    family: OptimiseeFamily
    length: int
    loss_clip: float = 1e3
    log_loss: bool = False
    second_order: bool = False

    def __post_init__(self):
        if self.length < 1:
            raise ValueError(f"length must be at least 1, got {self.length}")
        if not self.loss_clip > 0:
            raise ValueError(f"loss_clip must be positive, got {self.loss_clip}")

    def init_state(self, meta_params: Params, seed: int) -> InnerState:
        params, task = self.family.init(seed)
        return {
            "params": params,
            "rule": self.rule.bind(meta_params).init(params),
            "task": task,
            "step": torch.zeros((), dtype=torch.long),
        }

    def step(self, meta_params: Params, state: InnerState) -> tuple[torch.Tensor, InnerState]:
        task, step = state["task"], state["step"]

        def loss_of(params: Params) -> torch.Tensor:
            return self.family.loss(params, task, step)

        grads = grad(loss_of)(state["params"])
        if not self.second_order:
            grads = {name: g.detach() for name, g in grads.items()}
        params, rule_state = self.rule.bind(meta_params).update(grads, state["rule"], state["params"])
        loss = clipped_loss(loss_of(params), self.loss_clip)
        if self.log_loss:
            loss = loss.clamp(min=LOG_FLOOR).log()
        return loss, {"params": params, "rule": rule_state, "task": task, "step": step + 1}
