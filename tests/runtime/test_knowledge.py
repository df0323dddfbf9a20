"""The knowledge base on Ray: the served index answers concurrent clients with the brute-force neighbours;
records built by 2 Ray workers equal those of 1 writer in this process."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import ray
import torch

from distmeta.config import config_hash
from distmeta.knowledge import ExactIndex, KnowledgeStore
from distmeta.knowledge.commands import BuildRequest
from distmeta.runtime.knowledge import build_on_ray, serve_index
from tests.knowledge.helpers import STORE_STEPS, fill, sinusoid_run


def brute_force(stored, queries, k, metric):
    if metric == "cosine":
        unit = torch.nn.functional.normalize
        distances = 1 - unit(queries, dim=1) @ unit(stored, dim=1).T
    else:
        distances = torch.cdist(queries.double(), stored.double()).float()
    return distances.topk(k, dim=1, largest=False).indices


@pytest.mark.slow
def test_the_served_index_gives_many_concurrent_clients_the_brute_force_neighbours(cluster):
    generator = torch.Generator().manual_seed(0)
    stored = torch.randn(2000, 32, generator=generator)
    queries = torch.randn(64, 32, generator=generator)
    metric = "cosine"  # the actor passes the metric to ExactIndex, whose metrics tests/knowledge checks
    served = serve_index(stored, metric, max_concurrency=4, num_cpus=0.5)
    try:
        assert ray.get(served.actor.size.remote())[0] == 2000

        def client(rows: range):
            return [served.search(queries[r : r + 1], 5).indices[0] for r in rows]

        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(client, [range(i, 64, 8) for i in range(8)]))
        pipelined = [served.submit(queries[r : r + 1], 5) for r in range(64)]
        expected = brute_force(stored, queries, 5, metric)
        for i, rows in enumerate(range(i, 64, 8) for i in range(8)):
            for row, found in zip(rows, answers[i]):
                assert torch.equal(found, expected[row])
        for row, reference in enumerate(pipelined):
            assert torch.equal(served.result(reference).indices[0], expected[row])
        assert torch.equal(served.search(queries, 5).indices, ExactIndex(stored, metric).search(queries, 5).indices)
    finally:
        served.stop()


@pytest.mark.slow
def test_records_built_by_two_ray_workers_equal_those_of_one_writer(cluster, tmp_path):
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    config, experiment, params = sinusoid_run(one_dir)
    sinusoid_run(two_dir)
    fill(one_dir, config, experiment, params, tasks=6)
    request = BuildRequest(
        tasks=6,
        split="train",
        embedding="features",
        size=64,
        inner_steps=config.algorithm.test_inner_steps,
        store_steps=STORE_STEPS,
        writers=2,
    )
    written = build_on_ray(two_dir, request, workers=2, cpus_per_worker=0.5)
    assert [rows for _, rows in written] == [3, 3] and len(KnowledgeStore(two_dir).files()) == 2
    one = KnowledgeStore(one_dir).load(config_hash(config), 0)[1].sorted_by_task()
    two = KnowledgeStore(two_dir).load(config_hash(config), 0)[1].sorted_by_task()
    assert one.task_seed == two.task_seed
    assert torch.equal(one.embedding, two.embedding) and torch.equal(one.adapted_delta, two.adapted_delta)


@pytest.mark.slow
def test_records_sampled_during_training_by_two_ray_workers_equal_those_of_one_process(cluster, tmp_path):
    from distmeta.config import load_config
    from distmeta.runtime.launcher import ClusterRequest, train_distributed
    from distmeta.training.trainer import train

    overrides = [
        "train.steps=2",
        "train.meta_batch_size=4",
        "train.log_every=2",
        "train.val_every=0",
        "train.checkpoint_every=2",
        "model.hidden_sizes=[16, 16]",
        "train.knowledge_every=1",
        "train.knowledge_tasks=3",
        "train.knowledge_store_steps=5",
    ]
    config = load_config(None, [*overrides, f"train.run_dir={tmp_path / 'single'}"])
    train(config, print_fn=lambda *_: None, final_eval=False)
    two = train_distributed(
        load_config(None, overrides),
        ClusterRequest(workers=2, storage=str(tmp_path), name="two"),
        print_fn=lambda *_: None,
        final_eval=False,
    )
    for step in (1, 2):
        one_records = KnowledgeStore(tmp_path / "single").load(config_hash(config), step)[1].sorted_by_task()
        two_records = KnowledgeStore(two.run_dir).load(config_hash(config), step)[1].sorted_by_task()
        # tasks 0 and 1 ran on rank 0, task 2 on rank 1: gathered from both workers' files
        assert one_records.task_index == two_records.task_index == [0, 1, 2]
        assert one_records.task_seed == two_records.task_seed
        torch.testing.assert_close(two_records.embedding, one_records.embedding, atol=1e-4, rtol=0)
        torch.testing.assert_close(
            two_records.adapted_delta.float(), one_records.adapted_delta.float(), atol=2e-3, rtol=0
        )
    assert len(KnowledgeStore(two.run_dir).files()) == 4  # one file per worker and sampled step


@pytest.mark.slow
def test_a_learner_serving_its_knowledge_base_from_an_actor_finds_the_same_similar_tasks(cluster, tmp_path):
    import distmeta
    from tests.knowledge.test_warm_start import stored_task

    config, experiment, params = sinusoid_run(tmp_path)
    fill(tmp_path, config, experiment, params, tasks=12)
    local, served = distmeta.load(tmp_path), distmeta.load(tmp_path)
    served.serve_knowledge(num_cpus=0.5)
    try:
        task = stored_task(local, 5)
        expected = local.similar_tasks(task.support_x[0], task.support_y[0], k=4)
        found = served.similar_tasks(task.support_x[0], task.support_y[0], k=4)
        assert [t.task_index for t in found] == [t.task_index for t in expected]
        assert [t.distance for t in found] == pytest.approx([t.distance for t in expected], abs=1e-5)
        warm = served.adapt(task.support_x[0], task.support_y[0], steps=0, warm_start="knowledge", neighbours=2)
        plain_warm = local.adapt(task.support_x[0], task.support_y[0], steps=0, warm_start="knowledge", neighbours=2)
        assert torch.allclose(warm.predict(task.query_x[0]), plain_warm.predict(task.query_x[0]), atol=1e-5)
    finally:
        served.knowledge.index.stop()
