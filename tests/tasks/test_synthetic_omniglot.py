"""Synthetic Omniglot: Omniglot's task shapes on random images, drawn from the task's seed alone."""

import pytest
import torch

from distmeta.config import load_config
from distmeta.errors import ConfigError
from distmeta.tasks import SPLITS, build_task_distribution, sample_tasks
from distmeta.tasks.synthetic_omniglot import SyntheticOmniglotTasks

SYNTHETIC = ["task.name=omniglot", "task.omniglot.synthetic=true", "task.ways=3", "task.shots=2", "task.query_shots=3"]


def test_batches_have_omniglots_shapes_dtypes_and_class_major_labels():
    batch = SyntheticOmniglotTasks(ways=3, shots=2, query_shots=3, image_size=28).sample(4, 0)
    assert batch.support_x.shape == (4, 6, 1, 28, 28) and batch.query_x.shape == (4, 9, 1, 28, 28)
    assert batch.support_x.dtype == torch.float32 and batch.support_y.dtype == torch.int64
    assert set(batch.support_x.unique().tolist()) == {0.0, 1.0}  # ink or paper, as Omniglot's strokes
    for task in range(4):
        labels = batch.support_y[task]
        assert sorted(labels.tolist()) == [0, 0, 1, 1, 2, 2] and labels[0] == labels[1]
        for slot in range(3):
            assert set(batch.query_y[task, 3 * slot : 3 * slot + 3].tolist()) == {labels[2 * slot].item()}


def test_the_drawings_of_a_class_resemble_each_other_more_than_another_class():
    batch = SyntheticOmniglotTasks(ways=2, shots=1, query_shots=1, image_size=28).sample(1, 5)
    support, query = batch.support_x[0, :, 0], batch.query_x[0, :, 0]
    same = (support[0] != query[0]).float().mean()
    other = (support[0] != query[1]).float().mean()
    assert same < 0.25 < other


def test_the_same_seed_gives_identical_tasks_and_another_seed_does_not():
    distribution = SyntheticOmniglotTasks(ways=5, shots=1, query_shots=5, image_size=28)
    a, b, c = distribution.sample(2, 11), distribution.sample(2, 11), distribution.sample(2, 12)
    assert all(torch.equal(x, y) for x, y in zip(a.tensors(), b.tensors()))
    assert not torch.equal(a.support_x, c.support_x)


def test_the_config_builds_it_for_every_split_and_a_meta_batch_is_the_same_however_shared():
    config = load_config(None, SYNTHETIC)
    distribution = build_task_distribution(config, "train")
    assert isinstance(distribution, SyntheticOmniglotTasks) and distribution.output_size == 3
    whole = sample_tasks(distribution, 0, "train", 7, range(4))
    halves = [sample_tasks(distribution, 0, "train", 7, share) for share in (range(0, 1), range(1, 4))]
    for whole_tensor, *half_tensors in zip(whole.tensors(), *(half.tensors() for half in halves)):
        assert torch.equal(whole_tensor, torch.cat(half_tensors))
    val = sample_tasks(build_task_distribution(config, "val"), 0, "val", 7, range(4))
    assert not torch.equal(whole.support_x, val.support_x)


def test_synthetic_images_and_real_roots_together_are_refused():
    with pytest.raises(ConfigError, match="task.omniglot.synthetic: random images replace the data"):
        load_config(None, [*SYNTHETIC, "task.omniglot.roots=[a.zip]"])


def test_meta_training_tasks_take_train_ways_classes_and_validation_and_test_tasks_take_ways():
    config = load_config(None, [*SYNTHETIC, "task.train_ways=7"])
    ways = {split: build_task_distribution(config, split).sample(1, 0).support_y.max().item() + 1 for split in SPLITS}
    assert ways == {"train": 7, "val": 3, "test": 3}
