"""Evaluating optimisers on held-out optimisees: the batched curves are the one-task-at-a-time ones."""

import pytest
import torch

from distmeta.learned_optimizers.evaluation import batched_loss_curves, loss_curves
from distmeta.learned_optimizers.hand_designed import Adam, Momentum
from distmeta.learned_optimizers.rules import make_rule
from distmeta.tasks.digits import DigitsMLPFamily
from distmeta.tasks.quadratic import QuadraticFamily

SMALL = QuadraticFamily("test", dimensions=3, functions=8)


@pytest.mark.parametrize("baseline", [Adam, Momentum])
def test_batched_curves_of_a_rate_grid_equal_each_rate_run_task_by_task(baseline):
    rates, seeds = [0.01, 0.3], [7, 8, 9]
    batched = batched_loss_curves(baseline, rates, SMALL, seeds, 12)
    assert batched.shape == (2, 3, 13)
    for index, rate in enumerate(rates):
        torch.testing.assert_close(batched[index], loss_curves(baseline(rate), SMALL, seeds, 12))


def test_batched_curves_of_a_learned_rule_on_minibatched_digits_equal_the_task_by_task_ones():
    rule = make_rule("lstm")
    rule = rule.bind(rule.init_meta_parameters({}, torch.Generator().manual_seed(0)))
    family = DigitsMLPFamily("test", hidden=4, batch_size=16)
    batched = batched_loss_curves(lambda _: rule, [0.0], family, [1, 2], 5)[0]
    torch.testing.assert_close(batched, loss_curves(rule, family, [1, 2], 5))
