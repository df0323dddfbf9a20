"""The learned update rules: their formulas, their state, and their updates under vmap and autograd."""

import math

import pytest
import torch
from torch.func import vmap

from distmeta.errors import ConfigError
from distmeta.learned_optimizers import LSTMRule, MLPRule, make_rule
from distmeta.learned_optimizers.lstm import log_and_sign
from distmeta.learned_optimizers.mlp import DECAYS

RULES = [LSTMRule(), MLPRule()]


def bound(rule, seed=0, dtype=torch.float64):
    weights = rule.init_meta_parameters({}, torch.Generator().manual_seed(seed))
    return rule.bind({name: value.to(dtype) for name, value in weights.items()}), weights


def example(dtype=torch.float64):
    generator = torch.Generator().manual_seed(1)
    params = {
        "w": torch.randn(3, 4, generator=generator, dtype=dtype),
        "b": torch.randn(4, generator=generator, dtype=dtype),
    }
    grads = {name: torch.randn(value.shape, generator=generator, dtype=dtype) for name, value in params.items()}
    return params, grads


def test_log_and_sign_preprocessing_follows_the_paper_with_p_10():
    small = 1e-6  # below exp(-10) = 4.54e-5
    features = log_and_sign(torch.tensor([1.0, -math.exp(-5), 0.0, small]), 10.0)
    expected = torch.tensor([[0.0, 1.0], [-0.5, -1.0], [-1.0, 0.0], [-1.0, math.exp(10) * small]])
    torch.testing.assert_close(features, expected)


@pytest.mark.parametrize("rule", RULES, ids=["lstm", "mlp"])
def test_meta_parameters_are_drawn_from_the_generator_alone(rule):
    _, first = bound(rule, seed=5)
    _, again = bound(rule, seed=5)
    _, other = bound(rule, seed=6)
    assert first.keys() == again.keys()
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert any(not torch.equal(first[name], other[name]) for name in first)


@pytest.mark.parametrize("rule", RULES, ids=["lstm", "mlp"])
def test_an_unbound_rule_refuses_to_update(rule):
    params, grads = example()
    with pytest.raises(ValueError, match="bind\\(rule_params\\) it first"):
        rule.update(grads, rule.init(params), params)


@pytest.mark.parametrize("rule", RULES, ids=["lstm", "mlp"])
def test_an_update_under_vmap_equals_the_updates_one_task_at_a_time(rule):
    rule, _ = bound(rule)
    tasks = [example() for _ in range(3)]
    generator = torch.Generator().manual_seed(2)
    tasks = [
        ({k: v + torch.randn(v.shape, generator=generator, dtype=v.dtype) for k, v in p.items()}, g) for p, g in tasks
    ]
    stacked_params = {name: torch.stack([p[name] for p, _ in tasks]) for name in tasks[0][0]}
    stacked_grads = {name: torch.stack([g[name] for _, g in tasks]) for name in tasks[0][1]}

    def two_steps(params, grads):
        state = rule.init(params)
        params, state = rule.update(grads, state, params)
        return rule.update(grads, state, params)

    batched_params, batched_state = vmap(two_steps)(stacked_params, stacked_grads)
    for index, (params, grads) in enumerate(tasks):
        one_params, one_state = two_steps(params, grads)
        for name in params:
            torch.testing.assert_close(batched_params[name][index], one_params[name])
        torch.testing.assert_close(vmap(lambda s: s)(batched_state), batched_state)


@pytest.mark.parametrize("rule", RULES, ids=["lstm", "mlp"])
def test_the_meta_gradient_through_two_updates_matches_finite_differences(rule):
    params, grads = example()
    _, weights = bound(rule)
    weights = {name: value.double() for name, value in weights.items()}

    def loss_of_output_weight(output_weight):
        step_rule = rule.bind({**weights, "output.weight": output_weight})
        state, current = step_rule.init(params), params
        for _ in range(2):
            current, state = step_rule.update(grads, state, current)
        return sum(value.square().sum() for value in current.values())

    assert torch.autograd.gradcheck(loss_of_output_weight, (weights["output.weight"].clone().requires_grad_(True),))


def test_the_lstm_keeps_hidden_and_cell_states_per_coordinate_and_adds_its_scaled_output():
    rule, weights = bound(LSTMRule())
    params, grads = example()
    state = rule.init(params)
    assert state["hidden"]["w"].shape == (2, 3, 4, 20) and state["cell"]["b"].shape == (2, 4, 20)
    new_params, new_state = rule.update(grads, state, params)
    assert not torch.equal(new_state["hidden"]["w"], state["hidden"]["w"])
    step = new_params["w"] - params["w"]
    bound_on_step = 0.01 * (weights["output.weight"].abs().sum() + weights["output.bias"].abs())
    assert step.abs().max() <= bound_on_step  # |h| <= 1
    # coordinate-wise: equal gradients from equal states give equal steps, wherever they are
    same = {"w": torch.full((3, 4), 0.3, dtype=torch.float64), "b": torch.full((4,), 0.3, dtype=torch.float64)}
    stepped, _ = rule.update(same, state, params)
    steps = torch.cat([(stepped[n] - params[n]).flatten() for n in params])
    torch.testing.assert_close(steps, steps[:1].expand_as(steps))


def test_the_mlp_steps_by_a_times_exp_b_and_keeps_momenta_at_each_timescale():
    rule = MLPRule(hidden_layers=0)
    params, grads = example()
    magnitude = 50.0
    weights = {
        "output.weight": torch.zeros(2, rule.input_size, dtype=torch.float64),
        "output.bias": torch.tensor([1.0, magnitude], dtype=torch.float64),
    }
    new_params, state = rule.bind(weights).update(grads, rule.init(params), params)
    expected_step = rule.step_mult * 1.0 * math.exp(rule.exp_mult * magnitude)
    torch.testing.assert_close(params["w"] - new_params["w"], torch.full((3, 4), expected_step, dtype=torch.float64))
    decays = torch.tensor(DECAYS, dtype=torch.float64)
    torch.testing.assert_close(state["momentum"]["w"], (1 - decays) * grads["w"].unsqueeze(-1))
    assert state["iteration"].item() == 1


def test_an_unknown_learned_optimiser_is_refused_naming_the_field():
    with pytest.raises(ConfigError, match="optimizer: unknown learned optimiser 'adamw' \\(choose from lstm, mlp\\)"):
        make_rule("adamw")
