"""The Omniglot optimisee: a sigmoid MLP on one N-way task's images of the split's alphabets, in minibatches."""

import pytest
import torch
from torch.func import vmap

from distmeta.config import OmniglotConfig
from distmeta.tasks import omniglot_cache
from distmeta.tasks.omniglot import OmniglotTasks
from distmeta.tasks.omniglot_mlp import OmniglotMLPFamily
from distmeta.tasks.sigmoid_mlp import classifier_loss
from distmeta.tasks.synthetic_omniglot import SyntheticOmniglotTasks
from tests.tasks.test_omniglot import make_tree


def synthetic(ways=3, drawings=4, size=6, **settings) -> OmniglotMLPFamily:
    return OmniglotMLPFamily(SyntheticOmniglotTasks(ways, drawings, 0, size), **settings)


def test_a_task_is_seeded_and_holds_every_drawing_of_its_classes_flattened():
    family = synthetic(hidden=5, batch_size=4)
    (params, task), (again, task_again) = family.init(2), family.init(2)
    torch.testing.assert_close(params, again, rtol=0, atol=0)
    torch.testing.assert_close(task, task_again, rtol=0, atol=0)
    assert task["images"].shape == (12, 36) and 0 <= task["images"].min() and task["images"].max() <= 1
    assert task["labels"].bincount().tolist() == [4, 4, 4]
    assert params["hidden.weight"].shape == (5, 36) and params["output.weight"].shape == (3, 5)
    assert not torch.equal(family.init(3)[1]["images"], task["images"])


def test_the_loss_trains_on_the_steps_minibatch_of_the_task_order_and_the_full_loss_on_all_images():
    family = synthetic(batch_size=5)
    params, task = family.init(0)
    indices = task["order"][torch.tensor([10, 11, 0, 1, 2])]  # step 2 of batches of 5 over 12 images
    expected = classifier_loss(params, task["images"][indices], task["labels"][indices])
    torch.testing.assert_close(family.loss(params, task, torch.tensor(2)), expected)
    torch.testing.assert_close(family.full_loss(params, task), classifier_loss(params, task["images"], task["labels"]))
    steps = torch.tensor([0, 1, 2])
    batched = vmap(lambda step: family.loss(params, task, step))(steps)
    torch.testing.assert_close(batched, torch.stack([family.loss(params, task, s) for s in steps]))


def test_meta_train_and_meta_test_tasks_come_from_disjoint_alphabets(tmp_path):
    omniglot_cache._loaded.clear()
    config = OmniglotConfig(roots=(str(make_tree(tmp_path / "data")),), cache_dir=str(tmp_path / "cache"), image_size=8)
    train, test = (OmniglotMLPFamily(OmniglotTasks(config, split, 2, 6, 0), split) for split in ("train", "test"))
    assert train.classes.alphabets and test.classes.alphabets
    assert not set(train.classes.alphabets) & set(test.classes.alphabets)
    _, task = test.init(1)
    assert task["images"].shape == (12, 64) and 0 < task["images"].max() <= 1  # strokes, resized to 8x8
    omniglot_cache._loaded.clear()


def test_bad_settings_are_refused_naming_them():
    with pytest.raises(ValueError, match="split must be 'train' or 'test', got 'val'"):
        synthetic(split="val")
    with pytest.raises(ValueError, match="hidden and batch_size must be at least 1"):
        synthetic(hidden=0)
