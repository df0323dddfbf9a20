"""The coordinate-wise LSTM optimiser of Andrychowicz et al. (2016), "Learning to learn by
gradient descent by gradient descent".

One small two-layer LSTM (20 units per layer) is shared by every coordinate of every
parameter: each coordinate's gradient, preprocessed, goes in; a step comes out, scaled by
0.01, and is added to the coordinate: theta <- theta + 0.01 * out. Each coordinate keeps its
own hidden and cell states, which are this rule's state.

Preprocessing (the paper's appendix A, "log and sign", p = 10): a gradient g becomes
    (log|g| / p, sign g)   if |g| >= exp(-p)
    (-1, exp(p) g)         otherwise,
so the LSTM sees gradients of every magnitude on one scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from distmeta.algorithms.update_rules import Params, RuleState, UpdateRule


def log_and_sign(grad: torch.Tensor, p: float) -> torch.Tensor:
    """The two input features of each gradient entry, stacked on a new last dimension."""
    magnitude = grad.abs()
    large = magnitude >= math.exp(-p)
    # clamp before the log so that a zero gradient gives no -inf, not even in the unused branch
    log_part = torch.where(large, magnitude.clamp(min=math.exp(-p)).log() / p, torch.full_like(grad, -1.0))
    sign_part = torch.where(large, grad.sign(), math.exp(p) * grad)
    return torch.stack([log_part, sign_part], dim=-1)


@dataclass(frozen=True)
class LSTMRule(UpdateRule):
    """theta <- theta + output_scale * LSTM(log_and_sign(grad)), coordinate by coordinate.

    Meta-parameters (under `lstm.`): `layer<i>.weight_ih`, `layer<i>.weight_hh`,
    `layer<i>.bias` for each layer (gates in torch.nn.LSTM's order i, f, g, o), and the
    linear read-out `output.weight`, `output.bias`.
    """

    hidden_size: int = 20
    layers: int = 2
    preprocessing_p: float = 10.0
    output_scale: float = 0.01
    weights: Params | None = None
    """The LSTM's meta-parameters once bound; None in the unbound rule."""
    namespace = "lstm"

    def __post_init__(self):
        if self.hidden_size < 1 or self.layers < 1:
            raise ValueError(f"hidden_size and layers must be at least 1, got {self.hidden_size}, {self.layers}")
        if not self.preprocessing_p > 0:
            raise ValueError(f"preprocessing_p must be positive, got {self.preprocessing_p}")

    def init_meta_parameters(self, params: Params, generator: torch.Generator | None = None) -> Params:
        """torch.nn.LSTM's initialisation, U(-1/sqrt(H), 1/sqrt(H)), from `generator`; the
        shapes do not depend on `params` (one LSTM serves every coordinate)."""
        hidden, bound = self.hidden_size, 1.0 / math.sqrt(self.hidden_size)

        def uniform(*shape: int) -> torch.Tensor:
            return (torch.rand(shape, generator=generator) * 2 - 1) * bound

        weights = {}
        for layer in range(self.layers):
            inputs = 2 if layer == 0 else hidden
            weights[f"layer{layer}.weight_ih"] = uniform(4 * hidden, inputs)
            weights[f"layer{layer}.weight_hh"] = uniform(4 * hidden, hidden)
            weights[f"layer{layer}.bias"] = uniform(4 * hidden)
        weights["output.weight"] = uniform(hidden)
        weights["output.bias"] = uniform()
        return weights

    def bind(self, rule_params: Params) -> LSTMRule:
        return replace(self, weights=dict(rule_params))

    def init(self, params: Params) -> RuleState:
        """Zero hidden and cell states, (layers, *shape, hidden_size) per parameter."""

        def zeros(value: torch.Tensor) -> torch.Tensor:
            return value.new_zeros(self.layers, *value.shape, self.hidden_size)

        return {
            "hidden": {name: zeros(value) for name, value in params.items()},
            "cell": {name: zeros(value) for name, value in params.items()},
        }

    def update(self, grads: Params, state: RuleState, params: Params) -> tuple[Params, RuleState]:
        weights = self.bound(self.weights)
        new_params, hidden, cell = {}, {}, {}
        for name, value in params.items():
            step, hidden[name], cell[name] = self._step(
                weights, grads[name], state["hidden"][name], state["cell"][name]
            )
            new_params[name] = value + step
        return new_params, {"hidden": hidden, "cell": cell}

    def _step(
        self, w: Params, grad: torch.Tensor, hidden: torch.Tensor, cell: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The step of one parameter tensor, every coordinate a row of one batch through the LSTM."""
        inputs = log_and_sign(grad, self.preprocessing_p).reshape(-1, 2)
        coordinates = inputs.shape[0]
        hidden = hidden.reshape(self.layers, coordinates, self.hidden_size)
        cell = cell.reshape(self.layers, coordinates, self.hidden_size)
        new_hidden, new_cell = [], []
        for layer in range(self.layers):
            gates = (
                inputs @ w[f"layer{layer}.weight_ih"].T
                + hidden[layer] @ w[f"layer{layer}.weight_hh"].T
                + w[f"layer{layer}.bias"]
            )
            i, f, g, o = gates.chunk(4, dim=-1)
            c = torch.sigmoid(f) * cell[layer] + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            new_hidden.append(h)
            new_cell.append(c)
            inputs = h
        step = self.output_scale * (inputs @ w["output.weight"] + w["output.bias"])
        state_shape = (self.layers, *grad.shape, self.hidden_size)
        return (
            step.reshape(grad.shape),
            torch.stack(new_hidden).reshape(state_shape),
            torch.stack(new_cell).reshape(state_shape),
        )
