"""LearnedOptimizer keeps torch.optim.Optimizer's contract and trains a model in a plain PyTorch loop."""

import copy
import io

import pytest
import torch
from torch import nn

from distmeta.learned_optimizers import LearnedOptimizer, LSTMRule, MLPRule
from distmeta.learned_optimizers.mlp import TIMESCALES


def model_and_data(seed=0):
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(32, 4, generator=generator)
    targets = inputs @ torch.randn(4, 2, generator=generator) + 0.5
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), inputs, targets


def train_step(model, optimizer, inputs, targets):
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(inputs), targets)
    loss.backward()
    optimizer.step()
    return loss.item()


def normalised_descent():
    """An MLP rule whose network is linear, reading only the gradient: theta <- theta - 0.01 g / rms(g).
    A learned optimiser set by hand, so that the test knows it descends."""
    rule = MLPRule(hidden_layers=0)
    weight = torch.zeros(2, rule.input_size)
    weight[0, 0] = 1.0  # direction = the RMS-normalised gradient; magnitude = 0
    return rule, {"output.weight": weight, "output.bias": torch.zeros(2)}


def seeded(rule):
    return rule, rule.init_meta_parameters({}, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("make", [lambda: seeded(LSTMRule()), lambda: seeded(MLPRule())], ids=["lstm", "mlp"])
def test_a_state_dict_round_trip_gives_identical_next_steps(make):
    rule, meta_params = make()
    model, inputs, targets = model_and_data()
    optimizer = LearnedOptimizer(model.parameters(), rule, meta_params)
    for _ in range(3):
        train_step(model, optimizer, inputs, targets)
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    restored_model = copy.deepcopy(model)
    restored = LearnedOptimizer(restored_model.parameters(), rule, meta_params)
    restored.load_state_dict(torch.load(buffer))
    for _ in range(2):
        train_step(model, optimizer, inputs, targets)
        train_step(restored_model, restored, inputs, targets)
    for original, copied in zip(model.parameters(), restored_model.parameters()):
        torch.testing.assert_close(copied, original, rtol=0, atol=0)
    fresh_model = copy.deepcopy(restored_model)
    fresh = LearnedOptimizer(fresh_model.parameters(), rule, meta_params)  # no state: the hidden state matters
    train_step(restored_model, restored, inputs, targets)
    train_step(fresh_model, fresh, inputs, targets)
    assert any(not torch.equal(a, b) for a, b in zip(restored_model.parameters(), fresh_model.parameters()))


def test_it_trains_a_module_in_a_plain_pytorch_loop_and_lowers_its_loss():
    model, inputs, targets = model_and_data()
    optimizer = LearnedOptimizer(model.parameters(), *normalised_descent())
    losses = [train_step(model, optimizer, inputs, targets) for _ in range(60)]
    assert losses[-1] < 0.5 * losses[0]


def test_each_step_is_the_rules_update_of_each_parameter_tensor():
    rule, meta_params = seeded(LSTMRule())
    model, inputs, targets = model_and_data()
    before = {name: value.detach().clone() for name, value in model.named_parameters()}
    optimizer = LearnedOptimizer(model.parameters(), rule, meta_params)
    train_step(model, optimizer, inputs, targets)
    bound = rule.bind(meta_params)
    for name, param in model.named_parameters():
        value = {"param": before[name]}
        expected, _ = bound.update({"param": param.grad}, bound.init(value), value)
        torch.testing.assert_close(param.detach(), expected["param"])


def test_zero_grad_comes_from_the_base_class_and_parameters_without_gradients_are_left_alone():
    model, inputs, targets = model_and_data()
    frozen = model[2].weight
    frozen.requires_grad_(False)
    before = frozen.clone()
    optimizer = LearnedOptimizer(model.parameters(), *normalised_descent())
    train_step(model, optimizer, inputs, targets)
    assert torch.equal(frozen, before) and frozen not in optimizer.state
    optimizer.zero_grad()
    assert all(param.grad is None for param in model.parameters())


def test_a_float64_model_is_stepped_in_float64_with_the_closure_api():
    model, inputs, targets = model_and_data()
    model = model.double()
    optimizer = LearnedOptimizer(model.parameters(), *seeded(MLPRule()))

    def closure():
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(inputs.double()), targets.double())
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    assert loss.dtype == torch.float64 and all(p.dtype == torch.float64 for p in model.parameters())
    state = optimizer.state[model[0].weight]
    assert state["momentum"]["param"].dtype == torch.float64 and len(TIMESCALES) == 11


def test_a_rule_that_is_not_an_update_rule_is_refused():
    model, _, _ = model_and_data()
    with pytest.raises(TypeError, match="rule must be an UpdateRule, got str"):
        LearnedOptimizer(model.parameters(), "lstm", {})
