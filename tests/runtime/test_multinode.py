"""Two Ray nodes on loopback (`ray.cluster_utils.Cluster`): one worker on each, one run."""

import json

import pytest
import ray
from ray.cluster_utils import Cluster

from distmeta.config import load_config
from distmeta.runtime.launcher import ClusterRequest, train_distributed


@pytest.fixture
def two_nodes(ray_home, short_folder, monkeypatch):
    """A head and a second node of one CPU each: two one-CPU workers must spread over both."""
    monkeypatch.setenv("HOME", str(ray_home))
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False, "temp_dir": str(short_folder("ray-"))},
    )
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_two_workers_on_two_nodes_complete_a_run(two_nodes, tmp_path):
    config = load_config(
        None,
        [
            "train.steps=6",
            "train.meta_batch_size=4",
            "train.log_every=3",
            "train.val_every=0",
            "train.checkpoint_every=3",
            "model.hidden_sizes=[8]",
        ],
    )
    request = ClusterRequest(workers=2, storage=str(tmp_path / "runs"), name="spread", address=two_nodes.address)
    result = train_distributed(config, request, print_fn=lambda *_: None, final_eval=False)
    assert result.steps == 6
    workers = json.loads((result.run_dir / "workers.json").read_text())
    assert len({worker["node"] for worker in workers}) == 2
    assert result.summary["nodes"] == 2
