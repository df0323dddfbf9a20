"""Filling the knowledge base during meta-training: a sample of every knowledge_every-th step's tasks."""

import pytest
import torch

import distmeta
from distmeta.config import config_hash, load_config
from distmeta.errors import ConfigError
from distmeta.knowledge import KnowledgeStore
from distmeta.training.trainer import train

TINY = [
    "train.steps=3",
    "train.meta_batch_size=4",
    "train.log_every=3",
    "train.val_every=0",
    "train.checkpoint_every=3",
    "model.hidden_sizes=[16, 16]",
    "train.knowledge_store_steps=5",
]


def test_training_records_the_first_tasks_of_every_sampled_step_at_that_steps_meta_parameters(tmp_path):
    config = load_config(
        None, [*TINY, "train.knowledge_every=3", "train.knowledge_tasks=2", f"train.run_dir={tmp_path}"]
    )
    train(config, print_fn=lambda *_: None, final_eval=False)
    store = KnowledgeStore(tmp_path)
    assert store.steps(config_hash(config)) == [3]  # steps 1 and 2 are not multiples of 3
    header, records = store.load(config_hash(config), 3)
    assert records.task_index == [0, 1] and header.store_steps == 5
    learner = distmeta.load(tmp_path)  # at step 3: the records' step, so they are current
    task = learner.experiment.tasks("train").sample(1, records.task_seed[1], 1)
    nearest = learner.similar_tasks(task.support_x[0], task.support_y[0], k=1)[0]
    assert nearest.task_index == 1 and nearest.distance < 1e-4
    model = learner.adapt(task.support_x[0], task.support_y[0], steps=1, warm_start="knowledge", neighbours=2)
    assert bool(torch.isfinite(model.predict(task.query_x[0])).all())


def test_no_knowledge_every_writes_no_store_and_too_many_sampled_tasks_are_refused(tmp_path):
    train(load_config(None, [*TINY, f"train.run_dir={tmp_path}"]), print_fn=lambda *_: None, final_eval=False)
    assert KnowledgeStore(tmp_path).files() == []
    with pytest.raises(ConfigError, match="train.knowledge_tasks"):
        load_config(None, [*TINY, "train.knowledge_every=1", "train.knowledge_tasks=5"])


def test_a_meta_batch_smaller_than_the_sample_is_valid_while_the_sample_is_off():
    config = load_config(None, [*TINY, "train.meta_batch_size=1"])
    assert config.train.knowledge_every == 0 and config.train.knowledge_tasks > 1
