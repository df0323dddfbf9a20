"""Estimators over a truncated unroll with persistent state, checked against backprop on a quadratic.

The inner problem: an optimisee x in R^3 with loss 0.5 * sum a_i (x_i - b_i)^2, trained for 6
steps by Meta-SGD's rule, whose per-coordinate rates are the meta-parameters; the meta-loss is
the mean loss along the trajectory. Its exact gradient comes from a plain autograd unroll.
"""

import io

import pytest
import torch

from distmeta.algorithms.truncated import PES, AntitheticES, RuleUnroll, TruncatedBackprop, antithetic_noise
from distmeta.algorithms.update_rules import PerParameterSGD

A = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
B = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
LENGTH = 6
RATES = {"x": torch.tensor([0.3, 0.6, 0.2], dtype=torch.float64)}


def quadratic_loss(params):
    return 0.5 * (A * (params["x"] - B).square()).sum()


def start(seed: int):
    generator = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(3, generator=generator, dtype=torch.float64)}


UNROLL = RuleUnroll(PerParameterSGD(0.1), quadratic_loss, start, LENGTH)


def backprop_gradient(seed: int, first: int = 0, last: int = LENGTH) -> torch.Tensor:
    """d/d rates of the mean loss over steps [first, last) of the unroll from start(seed)."""
    rates = RATES["x"].clone().requires_grad_(True)
    x, losses = start(seed)["x"], []
    for step in range(last):
        if step == first:
            x = x.detach()  # the state before the truncation is a constant
        losses.append(0.5 * (A * (x - B).square()).sum())
        x = x - rates * A * (x - B)
    (gradient,) = torch.autograd.grad(torch.stack(losses[first:]).mean(), rates)
    return gradient


def relative_error(estimate: torch.Tensor, exact: torch.Tensor) -> float:
    return ((estimate - exact).norm() / exact.norm()).item()


def test_truncated_backprop_over_one_truncation_of_the_whole_unroll_is_the_unrolled_gradient():
    estimate = TruncatedBackprop(LENGTH).estimate(UNROLL, RATES, {}, seed=3)
    torch.testing.assert_close(estimate.grads["x"], backprop_gradient(3), rtol=1e-12, atol=1e-14)
    assert estimate.unroll_state["position"] == LENGTH


def test_truncated_backprop_carries_the_state_from_one_truncation_to_the_next_and_restarts_after_the_unroll():
    estimator, state = TruncatedBackprop(2), {}
    for first in (0, 2, 4):
        estimate = estimator.estimate(UNROLL, RATES, state, seed=3)
        torch.testing.assert_close(estimate.grads["x"], backprop_gradient(3, first, first + 2), rtol=1e-12, atol=0)
        state = estimate.unroll_state
    whole = TruncatedBackprop(LENGTH).estimate(UNROLL, RATES, {}, seed=3).unroll_state
    torch.testing.assert_close(state["inner"]["params"]["x"], whole["inner"]["params"]["x"])
    again = estimator.estimate(UNROLL, RATES, state, seed=5)
    assert again.unroll_state["position"] == 2
    torch.testing.assert_close(again.grads["x"], backprop_gradient(5, 0, 2), rtol=1e-12, atol=0)


def test_antithetic_es_with_many_pairs_matches_the_backprop_gradient_to_five_percent():
    estimate = AntitheticES(LENGTH, pairs=20000, sigma=1e-3).estimate(UNROLL, RATES, {}, seed=3)
    assert relative_error(estimate.grads["x"], backprop_gradient(3)) < 0.05


def test_the_perturbations_are_not_the_numbers_the_task_of_the_same_seed_is_drawn_from():
    # the unroll's task comes from torch's stream of the seed; the noise must come from another
    noise = antithetic_noise({"x": RATES["x"]}, pairs=1, sigma=1.0, seed=3)["x"][0]
    assert not torch.allclose(noise, start(3)["x"])
    assert torch.equal(noise, antithetic_noise({"x": RATES["x"]}, pairs=1, sigma=1.0, seed=3)["x"][0])


def test_pes_over_the_whole_unroll_in_one_truncation_is_antithetic_es():
    es = AntitheticES(LENGTH, pairs=64, sigma=1e-2).estimate(UNROLL, RATES, {}, seed=3)
    pes = PES(LENGTH, pairs=64, sigma=1e-2).estimate(UNROLL, RATES, {}, seed=3)
    torch.testing.assert_close(pes.grads["x"], es.grads["x"], rtol=1e-10, atol=1e-12)


def test_pes_over_three_truncations_is_unbiased_for_the_whole_unroll_to_five_percent():
    # the whole unroll's mean loss is the mean of the three truncations' mean losses, so the
    # mean of PES's three estimates must be its gradient (truncated backprop's is not)
    estimator, state, estimates = PES(2, pairs=20000, sigma=1e-3), {}, []
    for meta_step in range(3):
        estimate = estimator.estimate(UNROLL, RATES, state, seed=3 if meta_step == 0 else 100 + meta_step)
        estimates.append(estimate.grads["x"])
        state = estimate.unroll_state
    exact = backprop_gradient(3)
    assert relative_error(torch.stack(estimates).mean(0), exact) < 0.05
    truncated = torch.stack([backprop_gradient(3, first, first + 2) for first in (0, 2, 4)]).mean(0)
    assert relative_error(truncated, exact) > 0.2


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: PES(0, pairs=4, sigma=0.1), "truncation_length must be at least 1, got 0"),
        (lambda: AntitheticES(2, pairs=4, sigma=0.0), "sigma must be positive, got 0.0"),
        (lambda: PES(2, pairs=0, sigma=0.1), "pairs must be at least 1, got 0"),
    ],
)
def test_bad_estimator_settings_are_refused_when_the_estimator_is_made_naming_the_setting(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "estimator", [TruncatedBackprop(LENGTH + 1), AntitheticES(LENGTH + 1, 4, 0.1), PES(LENGTH + 1, 4, 0.1)]
)
def test_a_truncation_longer_than_the_unroll_is_refused_before_it_runs(estimator):
    with pytest.raises(ValueError, match="truncation_length 7 is longer than the unroll \\(6 steps\\)"):
        estimator.estimate(UNROLL, RATES, {}, seed=0)


@pytest.mark.parametrize(
    "estimator", [TruncatedBackprop(2), AntitheticES(2, pairs=8, sigma=1e-2), PES(2, pairs=8, sigma=1e-2)]
)
def test_an_unroll_state_saved_and_loaded_between_meta_steps_resumes_exactly(estimator):
    # everything a truncation continues from is in the state: a checkpoint of it loses nothing
    first = estimator.estimate(UNROLL, RATES, {}, seed=3)
    buffer = io.BytesIO()
    torch.save(first.unroll_state, buffer)
    buffer.seek(0)
    resumed = estimator.estimate(UNROLL, RATES, torch.load(buffer), seed=4)
    uninterrupted = estimator.estimate(UNROLL, RATES, first.unroll_state, seed=4)
    assert resumed.unroll_state["position"] == uninterrupted.unroll_state["position"] == 4
    torch.testing.assert_close(resumed.grads["x"], uninterrupted.grads["x"], rtol=0, atol=0)
    afresh = estimator.estimate(UNROLL, RATES, {}, seed=4)
    assert not torch.allclose(resumed.grads["x"], afresh.grads["x"])


def test_the_final_meta_loss_is_the_gradient_of_the_truncations_last_loss():
    rates = RATES["x"].clone().requires_grad_(True)
    x = start(3)["x"]
    for _ in range(LENGTH - 1):
        x = x - rates * A * (x - B)
    (exact,) = torch.autograd.grad(0.5 * (A * (x - B).square()).sum(), rates)  # the loss at step LENGTH - 1
    estimate = TruncatedBackprop(LENGTH, meta_loss="final").estimate(UNROLL, RATES, {}, seed=3)
    torch.testing.assert_close(estimate.grads["x"], exact, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="meta_loss must be one of \\('mean', 'final'\\), got 'last'"):
        PES(2, pairs=4, sigma=0.1, meta_loss="last")
