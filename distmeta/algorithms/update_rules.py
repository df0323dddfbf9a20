"""Inner update rules: how one inner step turns gradients into new parameters.

An update rule is a value with explicit state, as TorchOpt's and optax's optimisers are:

    state = rule.init(params)
    params, state = rule.update(grads, state, params)

Both are plain functions of tensors (no in-place ops, nothing kept on the object), so an
inner loop written with them runs under `torch.func.vmap` and is differentiated to second
order when the gradients it is given are in the graph.

A rule may have meta-parameters of its own, learned by the outer loop (Meta-SGD's rates, a
learned optimiser's network). It declares them with `init_meta_parameters`, and
`bind(rule_params)` gives the rule with their current values, through which the outer
derivative reaches them at every update. They are not part of the state: a state carried
from one meta-step to the next (a truncated unroll) is re-bound to the new values each time.
`namespace` is where they live in an algorithm's dict of meta-parameters (and so in
checkpoints): `<namespace>.<name>`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.func import grad

Params = dict[str, torch.Tensor]
RuleState = dict[str, Any]
"""A rule's state: nested dicts of tensors (a pytree), e.g. {"velocity": {name: tensor}}."""


class UpdateRule:
    """Base class: `init` and `update`; a rule with meta-parameters also overrides
    `init_meta_parameters` and `bind`."""

    namespace = ""
    """Prefix of the rule's meta-parameters in the meta-parameter dict; "" when it has none."""

    def init_meta_parameters(self, params: Params, generator: torch.Generator | None = None) -> Params:
        """Initial values of the rule's own meta-parameters for inner loops over `params`
        (drawn from `generator` when random); none by default."""
        return {}

    def bind(self, rule_params: Params) -> UpdateRule:
        """This rule with its meta-parameters at the values `rule_params` (itself when it has none)."""
        return self

    def init(self, params: Params) -> RuleState:
        """The state before the first step on `params`."""
        raise NotImplementedError

    def bound(self, rule_params: Params | None) -> Params:
        """`rule_params` as a bound rule holds them; an unbound rule (None) is refused."""
        if rule_params is None:
            raise ValueError(f"{type(self).__name__} has no meta-parameters: bind(rule_params) it first")
        return rule_params

    def update(self, grads: Params, state: RuleState, params: Params) -> tuple[Params, RuleState]:
        """One step: the new parameters and the new state."""
        raise NotImplementedError


@dataclass(frozen=True)
class SGD(UpdateRule):
    """Plain gradient descent at a fixed rate: theta <- theta - rate * grad. No state."""

    learning_rate: float

    def init(self, params: Params) -> RuleState:
        return {}

    def update(self, grads: Params, state: RuleState, params: Params) -> tuple[Params, RuleState]:
        return {name: value - self.learning_rate * grads[name] for name, value in params.items()}, state


@dataclass(frozen=True)
class PerParameterSGD(UpdateRule):
    """Meta-SGD's rule (Li et al., 2017): a learned rate per parameter entry.

    theta <- theta - alpha * grad, elementwise, where alpha has theta's shape and is a
    meta-parameter, initialised to `initial_rate` and named `inner_lr.<parameter name>`.
    """

    initial_rate: float
    rates: Params | None = None
    """The learned rates, by parameter name, once bound; None in the unbound rule."""
    namespace = "inner_lr"

    def init_meta_parameters(self, params: Params, generator: torch.Generator | None = None) -> Params:
        return {name: torch.full_like(value, self.initial_rate) for name, value in params.items()}

    def bind(self, rule_params: Params) -> PerParameterSGD:
        return PerParameterSGD(self.initial_rate, dict(rule_params))

    def init(self, params: Params) -> RuleState:
        rates = self.bound(self.rates)
        missing = sorted(set(params) - set(rates))
        if missing:
            raise KeyError(f"no learned rate for {missing[0]!r} (have {sorted(rates)})")
        return {}

    def update(self, grads: Params, state: RuleState, params: Params) -> tuple[Params, RuleState]:
        rates = self.bound(self.rates)
        return {name: value - rates[name] * grads[name] for name, value in params.items()}, state


# ---------------------------------------------------------------- running a rule


def gradients(loss_of: Callable[[Params], torch.Tensor], params: Params, create_graph: bool, autograd: bool) -> Params:
    """d loss_of(params) / d params, kept in the graph when `create_graph`.

    With `autograd`, torch.autograd (for loops and threads); otherwise torch.func (for vmap).
    """
    if not autograd:
        grads = grad(loss_of)(params)
        return grads if create_graph else {name: g.detach() for name, g in grads.items()}
    with torch.enable_grad():
        # evaluation starts from plain tensors: make them leaves to differentiate. A tensor in the
        # graph is differentiated through a view of its own, so that its gradient is the partial
        # derivative, as torch.func's: Proto-MAML's head is computed from the embedding's parameters,
        # whose gradient must not also run through the head (and free that graph before the query).
        params = {k: v.view_as(v) if v.requires_grad else v.detach().requires_grad_(True) for k, v in params.items()}
        values = list(params.values())
        grads = torch.autograd.grad(loss_of(params), values, create_graph=create_graph, allow_unused=True)
    return {name: torch.zeros_like(v) if g is None else g for (name, v), g in zip(params.items(), grads)}


def run_rule(
    rule: UpdateRule,
    loss_at_step: Callable[[int], Callable[[Params], torch.Tensor]],
    params: Params,
    state: RuleState,
    steps: int,
    differentiable: bool,
    autograd: bool = False,
    grad_clip: float = 0.0,
) -> tuple[Params, RuleState]:
    """`steps` steps of `rule` from (params, state); step s descends `loss_at_step(s)`.

    With `differentiable`, the inner gradients stay in the graph so that an outer
    derivative sees second-order terms (MAML); without, they are treated as constants
    (first-order MAML, Reptile, evaluation). Either way the rule's meta-parameters in
    `state` stay in the graph. With `grad_clip` > 0 each gradient entry is clamped to
    [-grad_clip, grad_clip] before the rule sees it (`clipped`).
    """
    for step in range(steps):
        grads = gradients(loss_at_step(step), params, differentiable, autograd)
        params, state = rule.update(clipped(grads, grad_clip), state, params)
    return params, state


def clipped(grads: Params, limit: float) -> Params:
    """Each entry of `grads` clamped to [-limit, limit] (`limit` 0: unchanged), as the MMAML authors'
    inner loop does (`--inner-loop-grad-clip 10`): one task whose support loss is huge (a steep
    function, a modulation gone large) then takes a bounded step instead of one that sends its
    adapted network, and the meta-batch's loss, to 1e20. The clamp is differentiable (its derivative
    is 0 where it clips), so second-order meta-gradients go through it."""
    if limit <= 0:
        return grads
    return {name: value.clamp(-limit, limit) for name, value in grads.items()}
