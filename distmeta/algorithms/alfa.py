"""ALFA (Baik et al., 2020): an inner update rule generated from the task's state at every step.

At inner step j, for the adapted parameter tensors theta_1..theta_L ("layers"), a small
network reads the task state — the mean gradient and mean value of each tensor, 2L
numbers — and outputs 2L multipliers (a_l, b_l). The step is

    theta_l <- (1 - decay[j, l] * b_l) * theta_l - rate[j, l] * a_l * grad_l,

where rate and decay are meta-learned per step and per tensor (`alfa.rate`, `alfa.decay`,
both (steps, L)), as is the network (`alfa.net.*`: 2L -> 2L, ReLU, -> 2L). The multipliers
are 1 + the network's output, so that an untrained network (small outputs) gives MAML with
learned per-step, per-layer rates. Baik et al. use 5 inner steps, second order; with
`first_order` the inner gradients (and so the network's inputs) are constants of the outer
derivative, while rate, decay and network still get theirs through the updates.

It adapts for at most the steps it was meta-trained for (`test_inner_steps <= inner_steps`):
the rate and decay of a step are learned for that step. Reusing the last step's beyond them
diverged on Omniglot (one meta-trained step at a learned rate: 97.9% after 1 step, 31.7% after 2,
chance after 10), so more steps are refused, not extrapolated. The rule works on any model (the
MLP, Conv4): it only reads tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from distmeta.algorithms.base import Params
from distmeta.algorithms.maml import MAML
from distmeta.algorithms.update_rules import RuleState, UpdateRule, run_rule
from distmeta.errors import ConfigError

INITIAL_DECAY = 1e-4
"""decay's starting value: small, so that ALFA starts close to MAML, but not 0, so that the
network's decay multipliers get a gradient from the first meta-step."""
NETWORK_OUTPUT_SCALE = 0.01
"""The network's last layer starts this small: multipliers near 1 at first."""


@dataclass(frozen=True)
class TaskConditionedRule(UpdateRule):
    """ALFA's rule; `rule_params` is None in the unbound rule (see `UpdateRule.bind`)."""

    initial_rate: float
    steps: int
    rule_params: Params | None = None
    namespace = "alfa"

    def init_meta_parameters(self, params: Params, generator: torch.Generator | None = None) -> Params:
        layers = len(params)
        width = 2 * layers
        values = {
            "rate": torch.full((self.steps, layers), self.initial_rate),
            "decay": torch.full((self.steps, layers), INITIAL_DECAY),
            "net.0.weight": torch.randn(width, width, generator=generator) / width**0.5,
            "net.0.bias": torch.zeros(width),
            "net.1.weight": torch.randn(width, width, generator=generator) * NETWORK_OUTPUT_SCALE / width**0.5,
            "net.1.bias": torch.zeros(width),
        }
        like = next(iter(params.values()))  # the model's dtype and device
        return {name: value.to(like) for name, value in values.items()}

    def bind(self, rule_params: Params) -> TaskConditionedRule:
        return TaskConditionedRule(self.initial_rate, self.steps, dict(rule_params))

    def init(self, params: Params) -> RuleState:
        layers = self.bound(self.rule_params)["rate"].shape[1]
        if len(params) != layers:
            raise ValueError(f"ALFA's rates are for {layers} parameter tensors, the inner loop adapts {len(params)}")
        return {"step": 0, "multipliers": []}

    def multipliers(self, grads: Params, params: Params) -> tuple[torch.Tensor, torch.Tensor]:
        """(rate multipliers, decay multipliers), one per tensor, from the task state."""
        names = list(params)
        state = torch.cat(
            [torch.stack([grads[name].mean() for name in names]), torch.stack([params[name].mean() for name in names])]
        )
        net = self.bound(self.rule_params)
        hidden = F.relu(F.linear(state, net["net.0.weight"], net["net.0.bias"]))
        out = 1 + F.linear(hidden, net["net.1.weight"], net["net.1.bias"])
        return out[: len(names)], out[len(names) :]

    def update(self, grads: Params, state: RuleState, params: Params) -> tuple[Params, RuleState]:
        step = state["step"]
        if step >= self.steps:
            raise ValueError(
                f"ALFA learned a rate and a weight decay for {self.steps} inner step(s), not for step {step + 1}: "
                f"adapt for at most {self.steps} (algorithm.inner_steps)"
            )
        rate_multiplier, decay_multiplier = self.multipliers(grads, params)
        rule_params = self.bound(self.rule_params)
        rate = rule_params["rate"][step] * rate_multiplier
        decay = rule_params["decay"][step] * decay_multiplier
        new = {name: (1 - decay[i]) * value - rate[i] * grads[name] for i, (name, value) in enumerate(params.items())}
        recorded = state["multipliers"] + [torch.cat([rate_multiplier, decay_multiplier])]
        return new, {"step": state["step"] + 1, "multipliers": recorded}


class ALFA(MAML):
    name = "alfa"

    def default_update_rule(self) -> UpdateRule:
        return TaskConditionedRule(self.inner_lr, max(self.inner_steps, 1))

    @classmethod
    def check_settings(cls, settings, is_classification: bool, task_name: str) -> None:
        if settings.inner_steps < 1:
            raise ConfigError("algorithm.inner_steps", "alfa learns a rate per inner step: give at least 1")
        if settings.test_inner_steps > settings.inner_steps:
            raise ConfigError(
                "algorithm.test_inner_steps",
                f"{settings.test_inner_steps} steps, but alfa learns a rate and a weight decay for each of its "
                f"algorithm.inner_steps ({settings.inner_steps}) and has none for more: give at most "
                f"{settings.inner_steps}",
            )

    def task_conditioning(self, meta_params: Params, support_x, support_y) -> torch.Tensor:
        """The multipliers the network output at each meta-training inner step, flattened."""

        def support_loss(params: Params) -> torch.Tensor:
            return self.loss(self.predict(meta_params, params, support_x), support_y)

        rule = self.update_rule.bind(self.rule_parameters(meta_params))
        start = self.model_parameters(meta_params)
        _, state = run_rule(
            rule,
            lambda step: support_loss,
            start,
            rule.init(start),
            self.inner_steps,
            False,
            self.autograd,
            self.inner_grad_clip,
        )
        return torch.stack(state["multipliers"]).flatten()
