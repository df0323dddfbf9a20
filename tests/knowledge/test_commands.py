"""`kb build` stores a split's tasks with the algorithm for that split's number of ways."""

from distmeta.api import load
from distmeta.config import load_config
from distmeta.experiment import build_experiment
from distmeta.knowledge import KnowledgeStore
from distmeta.knowledge.commands import BuildRequest, write_shard
from distmeta.training.checkpoint import save_checkpoint
from tests.conftest import TINY_SYNTHETIC_OMNIGLOT


def test_a_run_meta_trained_on_wider_tasks_stores_test_tasks_adapted_at_task_ways(tmp_path):
    overrides = ["algorithm.name=maml", "algorithm.test_inner_steps=1", "task.train_ways=6"]
    config = load_config(None, [*TINY_SYNTHETIC_OMNIGLOT, *overrides, f"train.run_dir={tmp_path}"])
    save_checkpoint(tmp_path, 0, config, build_experiment(config).initial_meta_parameters(), {}, {})
    request = BuildRequest(tasks=2, split="test", embedding="features", size=8, inner_steps=1, store_steps=1, writers=1)
    _, rows = write_shard(load(tmp_path), request, rank=0)
    [(header, _)] = KnowledgeStore(tmp_path).read()
    assert rows == 2
    # a head row per class of a 3-way test task, not per class of the 6-way training tasks
    assert dict(zip(header.adapted_names, header.adapted_shapes))["head.weight"][0] == 3
