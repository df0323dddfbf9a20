"""Evaluating optimisers on held-out optimisees: the batched curves, of a rate grid or of many tasks
(what `distmeta eval` and validation run), are the one-task-at-a-time ones."""

import pytest
import torch

from distmeta.config import load_config
from distmeta.learned_optimizer_runs.settings import optimisee_family
from distmeta.learned_optimizers.evaluation import batched_loss_curves, loss_curve, loss_curves
from distmeta.learned_optimizers.hand_designed import Adam, Momentum
from distmeta.learned_optimizers.rules import make_rule
from distmeta.tasks.digits import DigitsMLPFamily
from distmeta.tasks.quadratic import QuadraticFamily
from tests.learned_optimizer_runs.test_mlp_optimisees import OMNIGLOT, SINUSOID

SMALL = QuadraticFamily("test", dimensions=3, functions=8)


def task_by_task(rule, family, seeds, steps) -> torch.Tensor:
    """The reference: each task trained on its own, in a plain loop."""
    return torch.stack([loss_curve(rule, family, seed, steps) for seed in seeds])


@pytest.mark.parametrize("baseline", [Adam, Momentum])
def test_batched_curves_of_a_rate_grid_equal_each_rate_run_task_by_task(baseline):
    rates, seeds = [0.01, 0.3], [7, 8, 9]
    batched = batched_loss_curves(baseline, rates, SMALL, seeds, 12)
    assert batched.shape == (2, 3, 13)
    for index, rate in enumerate(rates):
        torch.testing.assert_close(batched[index], task_by_task(baseline(rate), SMALL, seeds, 12))


@pytest.mark.parametrize("family_name", ["digits", "sinusoid", "omniglot"])
def test_the_curves_of_a_learned_rule_on_many_minibatched_tasks_at_once_equal_the_task_by_task_ones(family_name):
    rule = make_rule("lstm")
    rule = rule.bind(rule.init_meta_parameters({}, torch.Generator().manual_seed(0)))
    if family_name == "digits":
        family = DigitsMLPFamily("test", hidden=4, batch_size=16)
    else:
        family = optimisee_family(load_config(None, SINUSOID if family_name == "sinusoid" else OMNIGLOT), "test")
    curves = loss_curves(rule, family, [1, 2, 3], 5)
    assert curves.shape == (3, 6)
    torch.testing.assert_close(curves, task_by_task(rule, family, [1, 2, 3], 5))
