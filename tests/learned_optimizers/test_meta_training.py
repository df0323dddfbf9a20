"""Meta-training learned optimisers in-process: bad settings refused, the unroll, and learning that helps."""

import dataclasses

import pytest
import torch

from distmeta.errors import ConfigError
from distmeta.learned_optimizers.evaluation import loss_curves
from distmeta.learned_optimizers.hand_designed import Adam
from distmeta.learned_optimizers.meta_training import MetaTrainingSettings, meta_train
from distmeta.learned_optimizers.unroll import OptimiseeUnroll, clipped_loss
from distmeta.tasks.optimisee import optimisee_seed
from distmeta.tasks.quadratic import QuadraticFamily

SMALL = QuadraticFamily(dimensions=3, functions=8)
QUICK = MetaTrainingSettings(unroll_length=20, truncation_length=5, meta_steps=4, pairs=2)


class BrokenQuadratics(QuadraticFamily):
    """Quadratics whose targets are NaN: the loss is NaN before any update."""

    def init(self, seed):
        params, task = super().init(seed)
        return params, {**task, "target": torch.full_like(task["target"], float("nan"))}


@pytest.mark.parametrize(
    "change, field, message",
    [
        (dict(sigma=0.0), "sigma", "must be positive, got 0.0"),
        (dict(sigma=-0.1), "sigma", "must be positive"),
        (dict(truncation_length=30), "truncation_length", "30 is longer than the unroll \\(unroll_length 20\\)"),
        (dict(optimizer="adamw"), "optimizer", "unknown learned optimiser 'adamw' \\(choose from lstm, mlp\\)"),
        (dict(estimator="reinforce"), "estimator", "unknown estimator 'reinforce'"),
        (dict(meta_loss="max"), "meta_loss", "must be one of mean, final"),
        (dict(pairs=0), "pairs", "must be at least 1, got 0"),
        (dict(gradient_clip=-1.0), "gradient_clip", "must be 0 \\(off\\) or positive"),
    ],
)
def test_bad_settings_are_refused_before_any_work_naming_the_field(change, field, message):
    with pytest.raises(ConfigError, match=f"^{field}: {message}") as error:
        meta_train(dataclasses.replace(QUICK, **change), SMALL)
    assert error.value.field == field


def test_an_optimisee_whose_loss_is_nan_from_step_0_is_refused_naming_it():
    with pytest.raises(ConfigError, match="^optimisee: loss is nan at step 0 of task seed \\d+, before any update"):
        meta_train(QUICK, BrokenQuadratics(dimensions=3, functions=8))


def test_the_estimators_see_a_clipped_loss_and_nan_counts_as_the_clip():
    losses = torch.tensor([1.0, 5e3, float("nan"), float("inf")])
    torch.testing.assert_close(clipped_loss(losses, 1e3), torch.tensor([1.0, 1e3, 1e3, 1e3]))


def test_the_unrolls_losses_are_the_losses_after_each_update_that_an_evaluation_records():
    rule = Adam(0.1)
    unroll = OptimiseeUnroll(rule, SMALL, length=6)
    state, losses = unroll.init_state({}, seed=4), []
    for _ in range(6):
        loss, state = unroll.step({}, state)
        losses.append(loss)
    torch.testing.assert_close(torch.stack(losses), loss_curves(rule, SMALL, [4], 6)[0, 1:])
    assert state["step"].item() == 6


def test_with_log_loss_the_unroll_gives_the_log_of_the_clipped_loss():
    plain, logged = OptimiseeUnroll(Adam(0.1), SMALL, 3), OptimiseeUnroll(Adam(0.1), SMALL, 3, log_loss=True)
    loss, _ = plain.step({}, plain.init_state({}, seed=4))
    log_loss, _ = logged.step({}, logged.init_state({}, seed=4))
    torch.testing.assert_close(log_loss, loss.log())


@pytest.mark.parametrize("estimator", ["truncated_backprop", "es", "pes"])
@pytest.mark.parametrize("optimizer", ["lstm", "mlp"])
def test_meta_training_reruns_bit_identically_and_moves_the_meta_parameters(optimizer, estimator):
    settings = dataclasses.replace(QUICK, optimizer=optimizer, estimator=estimator)
    first, again = meta_train(settings, SMALL), meta_train(settings, SMALL)
    initial = first.rule.init_meta_parameters({}, torch.Generator().manual_seed(settings.seed))
    assert len(first.losses) == 4 and first.skipped_steps == 0
    for name, value in first.meta_params.items():
        torch.testing.assert_close(again.meta_params[name], value, rtol=0, atol=0)
    assert any(not torch.equal(initial[name], first.meta_params[name]) for name in initial)


def test_a_short_meta_training_of_the_lstm_lowers_the_loss_of_held_out_quadratics():
    settings = MetaTrainingSettings(unroll_length=20, truncation_length=10, meta_steps=60, meta_lr=1e-2)
    result = meta_train(settings, SMALL)
    test_family = QuadraticFamily("test", dimensions=3, functions=8)
    seeds = [optimisee_seed(0, "test", 0, index) for index in range(3)]
    before = loss_curves(
        result.rule.bind(result.rule.init_meta_parameters({}, torch.Generator().manual_seed(0))), test_family, seeds, 20
    )[:, -1].mean()
    after = loss_curves(result.rule.bind(result.meta_params), test_family, seeds, 20)[:, -1].mean()
    assert after < 0.5 * before


class SquareRootAtZero(QuadraticFamily):
    """Loss sum sqrt|theta| from theta = 0: finite at step 0, but its gradient there is infinite."""

    def init(self, seed):
        params, task = super().init(seed)
        return {"theta": torch.zeros_like(params["theta"])}, task

    def loss(self, params, task, step):
        return params["theta"].abs().sqrt().sum()


def test_a_meta_gradient_that_is_not_finite_is_skipped_and_counted_not_applied():
    result = meta_train(dataclasses.replace(QUICK, meta_steps=2), SquareRootAtZero(dimensions=3, functions=8))
    initial = result.rule.init_meta_parameters({}, torch.Generator().manual_seed(QUICK.seed))
    assert result.skipped_steps == 2 and len(result.losses) == 2
    for name, value in initial.items():
        torch.testing.assert_close(result.meta_params[name], value, rtol=0, atol=0)
