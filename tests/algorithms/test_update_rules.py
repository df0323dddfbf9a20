"""Inner update rules: explicit state, meta-parameters in the graph, and any rule plugs into an algorithm."""

from dataclasses import dataclass

import pytest
import torch

from distmeta.algorithms.maml import MAML
from distmeta.algorithms.update_rules import SGD, PerParameterSGD, UpdateRule, run_rule
from distmeta.execution import batch_meta_gradient
from tests.conftest import meta_params_for, regression_batch, tiny_mlp


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


@dataclass(frozen=True)
class Momentum(UpdateRule):
    """Heavy ball: v <- mu v + g; theta <- theta - rate v. A rule whose state changes every step."""

    rate: float
    mu: float

    def init(self, params):
        return {"velocity": {name: torch.zeros_like(value) for name, value in params.items()}}

    def update(self, grads, state, params):
        velocity = {name: self.mu * state["velocity"][name] + grads[name] for name in params}
        return {name: params[name] - self.rate * velocity[name] for name in params}, {"velocity": velocity}


def quadratic(params):
    # loss (w - 2)^2, gradient 2(w - 2)
    return (params["w"] - 2).square().sum()


def test_sgd_steps_down_the_gradient_at_its_rate_and_keeps_no_state():
    # w0 = 0, rate 0.25: w1 = 0 - 0.25 * 2 * (0 - 2) = 1; w2 = 1 - 0.25 * 2 * (1 - 2) = 1.5
    rule = SGD(0.25)
    params, state = run_rule(rule, lambda step: quadratic, {"w": t(0.0)}, rule.init({"w": t(0.0)}), 2, False)
    assert params["w"].item() == pytest.approx(1.5)
    assert state == {}


def test_a_clipped_inner_gradient_moves_each_entry_by_at_most_the_rate_times_the_clip():
    # gradients 2(w - 2) at w0 = (0, 1.9): (-4, -0.2), clamped to 1: (-1, -0.2); rate 0.25: w1 = (0.25, 1.95)
    rule = SGD(0.25)
    start = {"w": t(0.0, 1.9)}
    params, _ = run_rule(rule, lambda step: quadratic, start, rule.init(start), 1, False, grad_clip=1.0)
    torch.testing.assert_close(params["w"], t(0.25, 1.95))
    unclipped, _ = run_rule(rule, lambda step: quadratic, start, rule.init(start), 1, False)
    torch.testing.assert_close(unclipped["w"], t(1.0, 1.95))


def test_a_rule_with_state_carries_it_from_step_to_step():
    # w0 = 0, rate 0.25, mu 0.5: g0 = -4, v1 = -4, w1 = 1; g1 = -2, v2 = 0.5 * -4 - 2 = -4, w2 = 1 + 1 = 2
    rule = Momentum(0.25, 0.5)
    start = {"w": t(0.0)}
    params, state = run_rule(rule, lambda step: quadratic, start, rule.init(start), 2, False)
    assert params["w"].item() == pytest.approx(2.0)
    assert state["velocity"]["w"].item() == pytest.approx(-4.0)


def test_per_parameter_rates_are_meta_parameters_that_the_outer_derivative_reaches():
    # w' = w - alpha * 2(w - 2) with w = 0, alpha = 0.25: dw'/dalpha = -2(w - 2) = 4
    rule = PerParameterSGD(0.25)
    start = {"w": t(0.0)}
    rates = rule.init_meta_parameters(start)
    assert rates["w"].item() == 0.25 and rule.namespace == "inner_lr"
    alpha = rates["w"].clone().requires_grad_(True)
    bound = rule.bind({"w": alpha})
    params, _ = run_rule(bound, lambda step: quadratic, start, bound.init(start), 1, True, autograd=True)
    (derivative,) = torch.autograd.grad(params["w"], alpha)
    assert derivative.item() == pytest.approx(4.0)


def test_a_rule_without_a_rate_for_a_parameter_names_it():
    with pytest.raises(KeyError, match="'b'"):
        PerParameterSGD(0.1).bind({"w": t(0.1)}).init({"w": t(0.0), "b": t(0.0)})


def test_maml_runs_any_update_rule_given_to_it_under_vmap_and_in_the_loop_alike():
    model = tiny_mlp()
    maml = MAML(model, False, inner_lr=0.1, inner_steps=3, test_inner_steps=3, update_rule=Momentum(0.05, 0.9))
    plain = MAML(model, False, inner_lr=0.05, inner_steps=3, test_inner_steps=3)
    params = meta_params_for(maml, model)
    batch = regression_batch(tasks=3)
    vmapped = batch_meta_gradient(maml, params, batch, "vmap")
    looped = batch_meta_gradient(maml, params, batch, "loop")
    sgd = batch_meta_gradient(plain, params, batch, "vmap")
    for key in params:
        torch.testing.assert_close(vmapped.grad_sum[key], looped.grad_sum[key], rtol=1e-6, atol=1e-10, msg=key)
    assert any(not torch.allclose(vmapped.grad_sum[key], sgd.grad_sum[key]) for key in params)
