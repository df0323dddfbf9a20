"""Meta-gradient estimators over an unroll whose state persists from one meta-step to the next.

A learned update rule is meta-trained on unrolls: an optimisee trained by the rule for
`length` steps. Differentiating through all of them at once is costly (and chaotic over long
horizons), so the unroll is cut into truncations of `truncation_length` steps, one per
meta-step. Its state (the optimisee's parameters, the rule's state, the position in the
unroll) is carried from one meta-step to the next in `MetaGradient.unroll_state`, and starts
afresh (seeded) once the unroll is over. The meta-loss of a truncation is the mean of the
losses at its steps (`meta_loss="mean"`, Andrychowicz et al.'s sum along the trajectory) or
the loss at its last step (`meta_loss="final"`). Three estimators of its gradient, as in
learned_optimization's `outer_trainers`:

- `TruncatedBackprop`: backprop through the truncation from the carried state, which is
  taken as a constant (biased: what earlier truncations did to the state is ignored).
- `AntitheticES`: pairs theta + eps, theta - eps with eps ~ N(0, sigma^2 I), the gradient
  of the Gaussian-smoothed loss; each pair runs the truncation from the carried state,
  which then moves on with the unperturbed theta.
- `PES` (Vicol, Metz, Sohl-Dickstein, 2021, "Unbiased gradient estimation in unrolled
  computation graphs with persistent evolution strategies"): each pair keeps its own two
  perturbed states and the sum of every perturbation it has had since the unroll began,
  which makes the estimate unbiased for the whole unroll's smoothed loss.

With one truncation covering the whole unroll, TruncatedBackprop is the unrolled gradient and
PES is AntitheticES (the same noise from the same seed). `seed` gives the noise of this
meta-step and, when the unroll starts afresh, its initial state.

Every particle starts from the same fresh state here; what varies between them is only the
perturbation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch.func import grad_and_value, vmap

from distmeta.algorithms.estimators import MetaGradient, MetaGradientEstimator
from distmeta.algorithms.update_rules import UpdateRule
from distmeta.tasks.base import derived_seed

Params = dict[str, torch.Tensor]
InnerState = dict[str, Any]
"""An unroll's own state: nested dicts of tensors (optimisee parameters, the rule's state)."""


class Unroll(Protocol):
    """An inner problem run step by step: what the estimators here differentiate or perturb."""

    length: int
    """Steps in a whole unroll; after them the next truncation starts afresh."""

    def init_state(self, meta_params: Params, seed: int) -> InnerState:
        """A fresh start, drawn from `seed`."""

    def step(self, meta_params: Params, state: InnerState) -> tuple[torch.Tensor, InnerState]:
        """One inner step: the loss at this step, and the state after it."""


@dataclass(frozen=True)
class RuleUnroll:
    """An optimisee trained by an update rule, whose meta-parameters are the rule's own.

    The loss of a step is the optimisee's loss before that step's update (the sum of them
    along the trajectory is Andrychowicz et al.'s meta-loss). With `second_order=False` the
    optimisee's gradients are constants to the outer derivative, the simplification that
    Andrychowicz et al. make.
    """

    rule: UpdateRule
    loss_of: Callable[[Params], torch.Tensor]
    initial_params: Callable[[int], Params]
    """The optimisee's starting parameters for a seed."""
    length: int
    second_order: bool = True

    def init_state(self, meta_params: Params, seed: int) -> InnerState:
        params = self.initial_params(seed)
        return {"params": params, "rule": self.rule.bind(meta_params).init(params)}

    def step(self, meta_params: Params, state: InnerState) -> tuple[torch.Tensor, InnerState]:
        grads, loss = grad_and_value(self.loss_of)(state["params"])
        if not self.second_order:
            grads = {name: g.detach() for name, g in grads.items()}
        params, rule_state = self.rule.bind(meta_params).update(grads, state["rule"], state["params"])
        return loss, {"params": params, "rule": rule_state}


META_LOSSES = ("mean", "final")
"""What a truncation's meta-loss is: the mean of the losses at its steps, or the last of them."""


def run_truncation(
    unroll: Unroll, meta_params: Params, state: InnerState, steps: int, meta_loss: str = "mean"
) -> tuple[torch.Tensor, InnerState]:
    """`steps` steps of `unroll` from `state`: the meta-loss of their losses (their mean, or the
    last one), and the state after them."""
    losses = []
    for _ in range(steps):
        loss, state = unroll.step(meta_params, state)
        losses.append(loss)
    return (losses[-1] if meta_loss == "final" else torch.stack(losses).mean()), state


@dataclass(frozen=True)
class TruncatedBackprop(MetaGradientEstimator):
    """The gradient of a truncation's mean loss by backprop, from the carried state held constant."""

    truncation_length: int
    meta_loss: str = "mean"

    def __post_init__(self):
        _check_settings(self.truncation_length, meta_loss=self.meta_loss)

    def estimate(
        self, unroll: Unroll, meta_params: Params, unroll_state: dict[str, Any], seed: int = 0
    ) -> MetaGradient:
        position, state = _resume(unroll, meta_params, unroll_state, seed, self.truncation_length)
        steps = min(self.truncation_length, unroll.length - position)
        leaves = {name: value.detach().requires_grad_(True) for name, value in meta_params.items()}
        with torch.enable_grad():
            loss, state = run_truncation(unroll, leaves, _detached(state), steps, self.meta_loss)
            grads = _autograd(loss, leaves)
        return MetaGradient(
            loss.detach(),
            grads,
            {"position": position + steps, "inner": _detached(state)},
            {"steps": torch.tensor(steps)},
        )


@dataclass(frozen=True)
class _AntitheticPairs(MetaGradientEstimator):
    """What ES and PES share: `pairs` antithetic perturbations of scale `sigma` over each
    truncation of `truncation_length` steps, scored by the `meta_loss` of each."""

    truncation_length: int
    pairs: int
    sigma: float
    meta_loss: str = "mean"

    def __post_init__(self):
        _check_settings(self.truncation_length, self.pairs, self.sigma, self.meta_loss)


@dataclass(frozen=True)
class AntitheticES(_AntitheticPairs):
    """Antithetic evolution strategies over a truncation, from the carried state.

    grad ~ mean over pairs of (L(theta + eps) - L(theta - eps)) eps / (2 sigma^2).
    """

    def estimate(
        self, unroll: Unroll, meta_params: Params, unroll_state: dict[str, Any], seed: int = 0
    ) -> MetaGradient:
        position, state = _resume(unroll, meta_params, unroll_state, seed, self.truncation_length)
        steps = min(self.truncation_length, unroll.length - position)
        meta_params = _detached(meta_params)
        noise = antithetic_noise(meta_params, self.pairs, self.sigma, seed)
        with torch.no_grad():
            perturbed = vmap(lambda shifted: run_truncation(unroll, shifted, state, steps, self.meta_loss)[0])
            positive = perturbed(_shifted(meta_params, noise, +1))
            negative = perturbed(_shifted(meta_params, noise, -1))
            loss, state = run_truncation(unroll, meta_params, state, steps, self.meta_loss)
        grads = _es_gradient(positive - negative, noise, self.sigma)
        return MetaGradient(
            loss, grads, {"position": position + steps, "inner": _detached(state)}, {"steps": torch.tensor(steps)}
        )


@dataclass(frozen=True)
class PES(_AntitheticPairs):
    """Persistent evolution strategies: antithetic pairs whose states and summed noise persist.

    grad ~ mean over pairs of (L(theta + eps) - L(theta - eps)) xi / (2 sigma^2), where xi
    is the sum of the pair's perturbations since its unroll began (eps included).
    """

    def estimate(
        self, unroll: Unroll, meta_params: Params, unroll_state: dict[str, Any], seed: int = 0
    ) -> MetaGradient:
        _check_truncation(self.truncation_length, unroll.length)
        meta_params = _detached(meta_params)
        if not unroll_state or unroll_state["position"] >= unroll.length:
            fresh = _detached(unroll.init_state(meta_params, seed))
            unroll_state = {
                "position": 0,
                "positive": _repeated(fresh, self.pairs),
                "negative": _repeated(fresh, self.pairs),
                "accumulated": {
                    name: torch.zeros(self.pairs, *value.shape, dtype=value.dtype, device=value.device)
                    for name, value in meta_params.items()
                },
            }
        position = unroll_state["position"]
        steps = min(self.truncation_length, unroll.length - position)
        noise = antithetic_noise(meta_params, self.pairs, self.sigma, seed)
        accumulated = {name: unroll_state["accumulated"][name] + noise[name] for name in meta_params}
        with torch.no_grad():
            perturbed = vmap(lambda shifted, state: run_truncation(unroll, shifted, state, steps, self.meta_loss))
            positive, positive_state = perturbed(_shifted(meta_params, noise, +1), unroll_state["positive"])
            negative, negative_state = perturbed(_shifted(meta_params, noise, -1), unroll_state["negative"])
        grads = _es_gradient(positive - negative, accumulated, self.sigma)
        new_state = {
            "position": position + steps,
            "positive": positive_state,
            "negative": negative_state,
            "accumulated": accumulated,
        }
        return MetaGradient((positive + negative).mean() / 2, grads, new_state, {"steps": torch.tensor(steps)})


def antithetic_noise(meta_params: Params, pairs: int, sigma: float, seed: int) -> Params:
    """eps ~ N(0, sigma^2 I) for each of `pairs` pairs and each meta-parameter, from `seed`
    (drawn on the CPU, so that a seed gives the same noise on any device).

    From a stream of its own (`noise_seed`): the unroll's task is drawn from torch's stream of
    `seed` itself, and noise equal to the task's numbers would not be independent of the task.
    """
    generator = torch.Generator().manual_seed(noise_seed(seed))
    return {
        name: (sigma * torch.randn(pairs, *value.shape, generator=generator, dtype=value.dtype)).to(value.device)
        for name, value in meta_params.items()
    }


NOISE_STREAM = 1
"""The word that makes the perturbations' stream differ from the task's."""


def noise_seed(seed: int) -> int:
    """The seed of the perturbations drawn with the task of `seed`: unrelated to it."""
    return derived_seed(seed, NOISE_STREAM)


# ---------------------------------------------------------------- helpers


def _resume(
    unroll: Unroll, meta_params: Params, unroll_state: dict[str, Any], seed: int, truncation_length: int
) -> tuple[int, InnerState]:
    """(position, state) to continue from: the carried ones, or a fresh start when there are
    none or the unroll is over."""
    _check_truncation(truncation_length, unroll.length)
    if unroll_state and unroll_state["position"] < unroll.length:
        return unroll_state["position"], unroll_state["inner"]
    return 0, _detached(unroll.init_state(_detached(meta_params), seed))


def _check_settings(truncation_length: int, pairs: int = 1, sigma: float = 1.0, meta_loss: str = "mean") -> None:
    """Refuse an estimator's bad settings when it is made, before any unroll runs."""
    if meta_loss not in META_LOSSES:
        raise ValueError(f"meta_loss must be one of {META_LOSSES}, got {meta_loss!r}")
    if truncation_length < 1:
        raise ValueError(f"truncation_length must be at least 1, got {truncation_length}")
    if pairs < 1:
        raise ValueError(f"pairs must be at least 1, got {pairs}")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")


def _check_truncation(truncation_length: int, length: int) -> None:
    if truncation_length > length:
        raise ValueError(f"truncation_length {truncation_length} is longer than the unroll ({length} steps)")


def _es_gradient(differences: torch.Tensor, directions: Params, sigma: float) -> Params:
    """mean over pairs of differences * direction / (2 sigma^2), per meta-parameter."""

    def combine(direction: torch.Tensor) -> torch.Tensor:
        weights = differences.reshape(-1, *([1] * (direction.dim() - 1)))
        return (weights * direction).mean(0) / (2 * sigma**2)

    return {name: combine(direction) for name, direction in directions.items()}


def _shifted(meta_params: Params, noise: Params, sign: int) -> Params:
    return {name: value + sign * noise[name] for name, value in meta_params.items()}


def _autograd(loss: torch.Tensor, leaves: Params) -> Params:
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    return {name: torch.zeros_like(v) if g is None else g for (name, v), g in zip(leaves.items(), grads)}


def _detached(tree):
    """A copy of nested dicts of tensors, cut from any graph."""
    if isinstance(tree, dict):
        return {key: _detached(value) for key, value in tree.items()}
    return tree.detach() if isinstance(tree, torch.Tensor) else tree


def _repeated(tree, count: int):
    """Nested dicts of tensors with a new leading dimension of `count` copies."""
    if isinstance(tree, dict):
        return {key: _repeated(value, count) for key, value in tree.items()}
    return tree.unsqueeze(0).expand(count, *tree.shape).clone()
