"""A learned update rule as a `torch.optim.Optimizer`: trains any model in a plain PyTorch loop.

    optimizer = LearnedOptimizer(model.parameters(), LSTMRule(), meta_params)
    for inputs, targets in data:
        optimizer.zero_grad()
        loss_fn(model(inputs), targets).backward()
        optimizer.step()

Each parameter tensor is updated on its own (the learned rules here are per coordinate, or
per tensor), with the rule's state for it in `self.state[param]`, so `state_dict()` /
`load_state_dict()` carry everything the next step depends on. The meta-parameters are
copied to each parameter's device (and dtype) once, so a model on a GPU is updated there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import overload

import torch
from torch.optim import Optimizer

from distmeta.algorithms.update_rules import Params, UpdateRule

PARAM = "param"
"""The name of the one tensor a rule sees at a time."""


class LearnedOptimizer(Optimizer):
    """`rule` (an unbound `UpdateRule`) at the meta-parameters `meta_params`, applied to p.grad."""

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict], rule: UpdateRule, meta_params: Params):
        if not isinstance(rule, UpdateRule):
            raise TypeError(f"rule must be an UpdateRule, got {type(rule).__name__}")
        super().__init__(params, defaults={})
        self.rule = rule
        self.meta_params = {name: value.detach() for name, value in meta_params.items()}
        self._bound: dict[tuple[torch.device, torch.dtype], UpdateRule] = {}

    def _rule_for(self, param: torch.Tensor) -> UpdateRule:
        """The rule bound to the meta-parameters on `param`'s device and in its dtype."""
        key = (param.device, param.dtype)
        if key not in self._bound:
            on_device = {
                name: value.to(device=param.device, dtype=param.dtype) for name, value in self.meta_params.items()
            }
            self._bound[key] = self.rule.bind(on_device)
        return self._bound[key]

    # torch.optim.Optimizer.step's own overloads: a closure's loss is returned, else None
    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise RuntimeError("LearnedOptimizer does not support sparse gradients")
                rule = self._rule_for(param)
                values = {PARAM: param.detach()}
                state = self.state[param]
                if not state:
                    state.update(rule.init(values))
                new_values, new_state = rule.update({PARAM: param.grad.detach()}, dict(state), values)
                param.copy_(new_values[PARAM])
                state.update(new_state)
        return loss
