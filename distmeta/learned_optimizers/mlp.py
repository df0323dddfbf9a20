"""A per-parameter MLP optimiser, as learned_optimization's `MLPLOpt` (Metz et al. 2019,
"Understanding and correcting pathologies in the training of learned optimizers").

Every coordinate of every parameter goes through one small MLP (ReLU, `hidden_layers` layers
of `hidden_size` units). Its inputs: the gradient, the parameter and momenta of the gradient
at several timescales, each normalised by its root mean square over the parameter tensor,
plus an embedding of the step count (tanh(t / s - 1) for timescales s from 1 to 100,000).
Its two outputs, a direction a and a magnitude b, make the step

    theta <- theta - step_mult * a * exp(exp_mult * b),

so the network sets the size of a step on a log scale. The momenta and the step count are
this rule's state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from distmeta.algorithms.update_rules import Params, RuleState, UpdateRule

DECAYS = (0.1, 0.5, 0.9, 0.99, 0.999, 0.9999)
"""learned_optimization's momentum timescales: m <- decay m + (1 - decay) g for each."""
TIMESCALES = (1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000)


def step_embedding(iteration: torch.Tensor) -> torch.Tensor:
    """tanh(t / s - 1) for each timescale s: where in training the step is."""
    timescales = torch.tensor(TIMESCALES, dtype=iteration.dtype, device=iteration.device)
    return torch.tanh(iteration / timescales - 1.0)


def rms_normalised(features: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each column of (coordinates, features) divided by its root mean square over the coordinates."""
    return features * torch.rsqrt(eps + features.square().mean(dim=0, keepdim=True))


@dataclass(frozen=True)
class MLPRule(UpdateRule):
    """theta <- theta - step_mult * a * exp(exp_mult * b), (a, b) = MLP(features), per coordinate.

    Meta-parameters (under `mlp.`): `layer<i>.weight`, `layer<i>.bias` for each hidden layer
    and `output.weight`, `output.bias` (two outputs: direction, magnitude).
    """

    hidden_size: int = 32
    hidden_layers: int = 2
    decays: tuple[float, ...] = DECAYS
    step_mult: float = 0.01
    exp_mult: float = 0.01
    weights: Params | None = None
    """The MLP's meta-parameters once bound; None in the unbound rule."""
    namespace = "mlp"

    def __post_init__(self):
        if self.hidden_size < 1 or self.hidden_layers < 0:
            raise ValueError(
                f"hidden_size must be at least 1 and hidden_layers at least 0, "
                f"got {self.hidden_size}, {self.hidden_layers}"
            )
        if not all(0 <= decay < 1 for decay in self.decays):
            raise ValueError(f"decays must lie in [0, 1), got {self.decays}")

    @property
    def input_size(self) -> int:
        return 2 + len(self.decays) + len(TIMESCALES)

    def init_meta_parameters(self, params: Params, generator: torch.Generator | None = None) -> Params:
        """Weights ~ N(0, 1 / fan_in), biases zero (haiku's MLP, which MLPLOpt uses), from
        `generator`; the shapes do not depend on `params`."""
        weights, inputs = {}, self.input_size
        sizes = [self.hidden_size] * self.hidden_layers
        for layer, outputs in enumerate(sizes):
            weights[f"layer{layer}.weight"] = torch.randn(outputs, inputs, generator=generator) / math.sqrt(inputs)
            weights[f"layer{layer}.bias"] = torch.zeros(outputs)
            inputs = outputs
        weights["output.weight"] = torch.randn(2, inputs, generator=generator) / math.sqrt(inputs)
        weights["output.bias"] = torch.zeros(2)
        return weights

    def bind(self, rule_params: Params) -> MLPRule:
        return replace(self, weights=dict(rule_params))

    def init(self, params: Params) -> RuleState:
        """Zero momenta, (*shape, len(decays)) per parameter, and step 0."""
        any_value = next(iter(params.values()))
        return {
            "momentum": {name: value.new_zeros(*value.shape, len(self.decays)) for name, value in params.items()},
            "iteration": any_value.new_zeros(()),
        }

    def update(self, grads: Params, state: RuleState, params: Params) -> tuple[Params, RuleState]:
        weights = self.bound(self.weights)
        iteration = state["iteration"]
        time_features = step_embedding(iteration)
        new_params, momentum = {}, {}
        for name, value in params.items():
            decays = torch.tensor(self.decays, dtype=value.dtype, device=value.device)
            momentum[name] = decays * state["momentum"][name] + (1 - decays) * grads[name].unsqueeze(-1)
            new_params[name] = value - self._step(weights, grads[name], value, momentum[name], time_features)
        return new_params, {"momentum": momentum, "iteration": iteration + 1}

    def _step(
        self, w: Params, grad: torch.Tensor, value: torch.Tensor, momentum: torch.Tensor, time_features: torch.Tensor
    ) -> torch.Tensor:
        features = torch.cat([grad.reshape(-1, 1), value.reshape(-1, 1), momentum.reshape(-1, len(self.decays))], 1)
        # normalised per tensor first, then the step embedding, the same for every coordinate
        features = rms_normalised(features)
        features = torch.cat([features, time_features.expand(features.shape[0], -1)], dim=1)
        for layer in range(self.hidden_layers):
            features = torch.relu(features @ w[f"layer{layer}.weight"].T + w[f"layer{layer}.bias"])
        direction, magnitude = (features @ w["output.weight"].T + w["output.bias"]).unbind(-1)
        step = self.step_mult * direction * torch.exp(self.exp_mult * magnitude)
        return step.reshape(value.shape)
