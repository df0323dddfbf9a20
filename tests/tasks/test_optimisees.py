"""Optimisee families: seeded, deterministic tasks; meta-train and meta-test kept apart."""

import pytest
import torch
from torch.func import vmap

from distmeta.tasks.digits import DigitsMLPFamily, all_digits, split_indices
from distmeta.tasks.optimisee import optimisee_seed
from distmeta.tasks.quadratic import QuadraticFamily

STEP0 = torch.tensor(0)


def test_a_quadratic_task_is_drawn_from_its_seed_alone():
    family = QuadraticFamily()
    (params_a, task_a), (params_b, task_b) = family.init(7), family.init(7)
    torch.testing.assert_close(task_a["matrix"], task_b["matrix"], rtol=0, atol=0)
    torch.testing.assert_close(params_a["theta"], params_b["theta"], rtol=0, atol=0)
    assert not torch.equal(family.init(8)[1]["matrix"], task_a["matrix"])
    assert task_a["matrix"].shape == (128, 10, 10) and params_a["theta"].shape == (128, 10)


def test_uniform_entries_draw_w_and_y_from_0_to_1_as_learning_to_learn_does():
    _, task = QuadraticFamily(entries="uniform").init(7)
    assert 0 <= task["matrix"].min() and task["matrix"].max() < 1 and 0 <= task["target"].min()
    assert QuadraticFamily().init(7)[1]["matrix"].min() < 0


def test_a_quadratic_loss_is_the_mean_squared_residual_and_zero_at_its_solution():
    family = QuadraticFamily(dimensions=3, functions=4)
    params, task = family.init(1)
    residual = task["matrix"] @ params["theta"].unsqueeze(-1) - task["target"].unsqueeze(-1)
    expected = residual.square().sum((1, 2)).mean()
    torch.testing.assert_close(family.loss(params, task, STEP0), expected)
    solution = torch.linalg.solve(task["matrix"].double(), task["target"].double()).float()
    assert family.full_loss({"theta": solution}, task).item() < 1e-6


def test_meta_train_and_meta_test_seeds_are_disjoint_streams():
    train = {optimisee_seed(0, "train", step, index) for step in range(50) for index in range(4)}
    test = {optimisee_seed(0, "test", 0, index) for index in range(200)}
    assert len(train) == 200 and len(test) == 200 and not train & test
    with pytest.raises(ValueError, match="split must be 'train' or 'test', got 'val'"):
        optimisee_seed(0, "val", 0, 0)


def test_digits_train_and_test_images_are_disjoint_and_cover_the_data_set():
    images, labels = all_digits()
    train, test = split_indices("train", len(labels)), split_indices("test", len(labels))
    assert len(labels) == 1797 and images.shape == (1797, 64) and 0 <= images.min() and images.max() <= 1
    assert not set(train.tolist()) & set(test.tolist())
    assert sorted(train.tolist() + test.tolist()) == list(range(1797))
    assert len(DigitsMLPFamily("train").labels) == len(train) and len(DigitsMLPFamily("test").labels) == len(test)


def test_a_digits_task_is_seeded_and_its_minibatch_depends_on_the_step():
    family = DigitsMLPFamily("train")
    (params, task), (again, task_again) = family.init(3), family.init(3)
    torch.testing.assert_close(params, again, rtol=0, atol=0)
    assert torch.equal(task["order"], task_again["order"])
    first, second = family.loss(params, task, STEP0), family.loss(params, task, torch.tensor(1))
    assert first.item() != second.item()
    torch.testing.assert_close(family.loss(params, task, STEP0), first, rtol=0, atol=0)
    assert not torch.equal(family.init(4)[1]["order"], task["order"])


def test_digits_minibatches_of_a_batch_of_unrolls_under_vmap_are_each_their_own():
    family = DigitsMLPFamily("train")
    params, task = family.init(3)
    steps = torch.tensor([0, 5, 11])
    batched = vmap(lambda step: family.loss(params, task, step))(steps)
    torch.testing.assert_close(batched, torch.stack([family.loss(params, task, s) for s in steps]))


def test_the_wider_digits_mlp_has_twice_the_hidden_units():
    params, _ = DigitsMLPFamily("test", hidden=40).init(0)
    assert params["hidden.weight"].shape == (40, 64) and params["output.weight"].shape == (10, 40)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: DigitsMLPFamily("val"), "split must be 'train' or 'test', got 'val'"),
        (lambda: DigitsMLPFamily(hidden=0), "hidden and batch_size must be at least 1"),
        (lambda: QuadraticFamily(dimensions=0), "dimensions and functions must be at least 1"),
        (lambda: QuadraticFamily(entries="cauchy"), "entries must be one of \\('normal', 'uniform'\\), got 'cauchy'"),
    ],
)
def test_bad_family_settings_are_refused_naming_them(make, message):
    with pytest.raises(ValueError, match=message):
        make()
