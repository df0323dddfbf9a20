"""The sinusoid optimisee: the MAML MLP fitting one seeded sinusoid, in minibatches of points."""

import pytest
import torch
from torch.func import vmap

from distmeta.models.mlp import MLP
from distmeta.tasks.sinusoid import SinusoidTasks
from distmeta.tasks.sinusoid_mlp import SinusoidMLPFamily

SMALL = SinusoidMLPFamily(hidden_sizes=(8, 8), batch_size=4, points=12, eval_points=6)


def test_a_task_is_the_few_shot_familys_sinusoid_of_its_seed_with_its_points_as_support_and_query():
    (params, task), (again, task_again) = SMALL.init(5), SMALL.init(5)
    torch.testing.assert_close(params, again, rtol=0, atol=0)
    torch.testing.assert_close(task, task_again, rtol=0, atol=0)
    sinusoid = SinusoidTasks(12, 6).sample(1, 5)
    assert torch.equal(task["inputs"], sinusoid.support_x[0]) and torch.equal(task["eval_targets"], sinusoid.query_y[0])
    assert task["inputs"].shape == (12, 1) and task["eval_inputs"].shape == (6, 1)
    assert task["inputs"].abs().max() <= 5 and task["targets"].abs().max() <= 5
    assert not torch.equal(SMALL.init(6)[1]["targets"], task["targets"])


def test_starting_parameters_have_the_mlps_shapes_and_its_default_bounds_without_touching_global_randomness():
    before = torch.random.get_rng_state()
    params, _ = SinusoidMLPFamily(hidden_sizes=(40, 40)).init(0)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert {name: tuple(p.shape) for name, p in MLP().named_parameters()} == {
        name: tuple(p.shape) for name, p in params.items()
    }
    assert params["features.2.weight"].abs().max() <= 1 / 40**0.5 and params["head.bias"].abs().max() <= 1 / 40**0.5
    assert params["features.0.weight"].abs().max() > 0.5  # fan-in 1: bound 1


def test_the_loss_is_the_mlps_mse_on_the_steps_minibatch_and_the_full_loss_on_the_held_out_points():
    params, task = SMALL.init(1)
    model = MLP(1, (8, 8), 1)
    model.load_state_dict(params)
    points = torch.tensor([8, 9, 10, 11])  # step 2 of batches of 4
    expected = torch.nn.functional.mse_loss(model(task["inputs"][points]), task["targets"][points])
    torch.testing.assert_close(SMALL.loss(params, task, torch.tensor(2)), expected)
    torch.testing.assert_close(SMALL.loss(params, task, torch.tensor(5)), expected)  # 12 points: cycles every 3 steps
    held_out = torch.nn.functional.mse_loss(model(task["eval_inputs"]), task["eval_targets"])
    torch.testing.assert_close(SMALL.full_loss(params, task), held_out)


def test_minibatches_of_a_batch_of_unrolls_under_vmap_are_each_their_own():
    params, task = SMALL.init(3)
    steps = torch.tensor([0, 1, 2])
    batched = vmap(lambda step: SMALL.loss(params, task, step))(steps)
    torch.testing.assert_close(batched, torch.stack([SMALL.loss(params, task, s) for s in steps]))
    assert len(set(batched.tolist())) == 3


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"split": "val"}, "split must be 'train' or 'test', got 'val'"),
        ({"hidden_sizes": ()}, "hidden_sizes must be one or more widths"),
        ({"batch_size": 0}, "batch_size, points and eval_points must be at least 1"),
    ],
)
def test_bad_settings_are_refused_naming_them(settings, message):
    with pytest.raises(ValueError, match=message):
        SinusoidMLPFamily(**settings)
