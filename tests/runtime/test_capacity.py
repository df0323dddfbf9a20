"""What a cluster can hold, counted node by node (pure arithmetic, no Ray)."""

from pathlib import Path

import pytest
import yaml

from distmeta.errors import ConfigError
from distmeta.runtime.autoscaling import node_types_of
from distmeta.runtime.capacity import (
    ClusterCapacity,
    NodeShape,
    WorkerShape,
    check_within_maximum,
    workers_at_most,
    workers_now,
    workers_per_node,
)

ROOT = Path(__file__).resolve().parents[2]
GPU_WORKER = WorkerShape(cpus=1, gpus=1)
HEAD = NodeShape("head", cpus=4, gpus=0)


def test_a_node_holds_as_many_workers_as_its_scarcest_resource_allows():
    assert workers_per_node(NodeShape("n", cpus=8, gpus=2), GPU_WORKER) == 2
    assert workers_per_node(NodeShape("n", cpus=1, gpus=4), GPU_WORKER) == 1
    assert workers_per_node(NodeShape("n", cpus=0.5, gpus=1), WorkerShape(0.25, 0)) == 2


def test_workers_are_counted_per_node_not_on_the_summed_resources():
    two_half_nodes = ClusterCapacity((NodeShape("a", cpus=1, gpus=1), NodeShape("b", cpus=1, gpus=1)))
    # 2 CPUs and 2 GPUs in all, but no single node holds a worker of 2 CPUs and 2 GPUs
    assert workers_now(two_half_nodes, WorkerShape(2, 2)) == 0
    with pytest.raises(ConfigError, match=r"--workers: one worker \(2 CPU, 2 GPU\) fits on no node"):
        check_within_maximum(two_half_nodes, WorkerShape(2, 2), 1, "--workers")


def test_a_cluster_without_an_autoscaler_holds_what_its_nodes_hold_now():
    cluster = ClusterCapacity((HEAD, NodeShape("n", cpus=4, gpus=2)))
    assert workers_at_most(cluster, GPU_WORKER) == workers_now(cluster, GPU_WORKER) == 2
    with pytest.raises(ConfigError, match=r"holds at most 2 such worker\(s\); .*no autoscaler"):
        check_within_maximum(cluster, GPU_WORKER, 3, "--workers")


def test_an_autoscaling_cluster_holds_its_head_plus_every_node_type_at_its_maximum():
    cluster = ClusterCapacity((HEAD,), (NodeShape("gpu", cpus=1, gpus=1, count=4),), autoscaling=True)
    assert workers_now(cluster, GPU_WORKER) == 0
    assert workers_at_most(cluster, GPU_WORKER) == 4
    check_within_maximum(cluster, GPU_WORKER, 4, "--workers")
    with pytest.raises(
        ConfigError,
        match=r"5 worker\(s\) x \(1 CPU, 1 GPU\) do not fit: the cluster holds at most 4 "
        r"such worker\(s\) even when the autoscaler has grown it; .*up to 4 x gpu",
    ):
        check_within_maximum(cluster, GPU_WORKER, 5, "--workers")


def test_the_cluster_wide_max_workers_caps_the_nodes_the_most_useful_types_first():
    cluster = ClusterCapacity(
        (HEAD,),
        (NodeShape("one", cpus=4, gpus=1, count=8), NodeShape("four", cpus=16, gpus=4, count=8)),
        max_worker_nodes=3,
        autoscaling=True,
    )
    assert workers_at_most(cluster, GPU_WORKER) == 12  # three four-GPU nodes


def test_a_worker_no_node_type_can_hold_is_refused_though_the_summed_cpus_would_do():
    cluster = ClusterCapacity(
        (NodeShape("head", cpus=1, gpus=0),), (NodeShape("small", cpus=2, gpus=0, count=10),), autoscaling=True
    )
    with pytest.raises(
        ConfigError,
        match=r"--workers: one worker \(4 CPU, 0 GPU\) fits on no node.*"
        r"up to 10 x small \(2 CPU, 0 GPU\)",
    ):
        check_within_maximum(cluster, WorkerShape(4, 0), 1, "--workers")


def test_a_node_type_that_does_not_declare_its_cpus_is_not_limited_by_them():
    cluster = ClusterCapacity((HEAD,), (NodeShape("gpu_worker", cpus=None, gpus=1, count=8),), autoscaling=True)
    assert workers_at_most(cluster, WorkerShape(4, 1)) == 8
    # CPU workers on it: nothing declared limits them, so the maximum is unknown and nothing refused
    assert workers_per_node(NodeShape("gpu_worker", cpus=None, gpus=1), WorkerShape(1, 0)) is None
    assert workers_at_most(cluster, WorkerShape(1, 0)) is None
    check_within_maximum(cluster, WorkerShape(64, 0), 1000, "--workers")


def test_an_autoscaler_whose_node_types_are_unknown_refuses_nothing_and_knows_no_maximum():
    cluster = ClusterCapacity((HEAD,), autoscaling=True)
    assert workers_at_most(cluster, GPU_WORKER) is None
    check_within_maximum(cluster, GPU_WORKER, 64, "--workers")


def test_node_types_are_read_from_a_ray_up_config_without_the_head():
    config = {
        "max_workers": 8,
        "head_node_type": "head",
        "available_node_types": {
            "head": {"resources": {}, "max_workers": 0},
            "gpu_worker": {"min_workers": 0, "max_workers": 8, "resources": {"GPU": 1}},
            "spare": {"resources": {"CPU": 2}},
        },
    }
    types, max_worker_nodes = node_types_of(config)
    assert max_worker_nodes == 8
    assert types == (NodeShape("gpu_worker", None, 1, 8), NodeShape("spare", 2, 0, 8))
    del config["max_workers"]
    assert node_types_of(config)[0][1] == NodeShape("spare", 2, 0, None)  # no limit given anywhere


@pytest.mark.parametrize("path", ["cluster/aws-gpu.yaml", "cluster/gcp-gpu.yaml"])
def test_the_shipped_ray_up_configs_grow_to_eight_gpu_workers_and_refuse_nine(path):
    types, max_worker_nodes = node_types_of(yaml.safe_load((ROOT / path).read_text()))
    cluster = ClusterCapacity((NodeShape("head", cpus=8, gpus=0),), types, max_worker_nodes, autoscaling=True)
    check_within_maximum(cluster, GPU_WORKER, 8, "--workers")
    with pytest.raises(ConfigError, match=r"9 worker\(s\) x \(1 CPU, 1 GPU\) do not fit: the cluster holds at most 8"):
        check_within_maximum(cluster, GPU_WORKER, 9, "--workers")


def test_on_kuberay_the_node_types_come_from_the_raycluster_as_its_autoscaler_reads_them(monkeypatch):
    from ray.autoscaler._private.kuberay import autoscaling_config

    from distmeta.runtime import autoscaling

    asked = []

    class RayClusterReader:
        def __init__(self, name, namespace):
            asked.append((name, namespace))

        def __call__(self):  # what KubeRay's autoscaler derives from cluster/kuberay/raycluster.yaml
            return {
                "max_workers": 8,
                "head_node_type": "headgroup",
                "available_node_types": {
                    "headgroup": {"resources": {"CPU": 4}, "max_workers": 0},
                    "gpu": {"resources": {"CPU": 4, "GPU": 1}, "min_workers": 0, "max_workers": 8},
                },
            }

    monkeypatch.setattr(autoscaling_config, "AutoscalingConfigProducer", RayClusterReader)
    monkeypatch.delenv("RAY_CLUSTER_NAME", raising=False)
    assert autoscaling._node_types_from_kuberay() is None  # not on KubeRay
    monkeypatch.setenv("RAY_CLUSTER_NAME", "distmeta")
    monkeypatch.setenv("RAY_CLUSTER_NAMESPACE", "ml")
    assert autoscaling._node_types_from_kuberay() == ((NodeShape("gpu", 4, 1, 8),), 8)
    assert asked == [("distmeta", "ml")]


def test_a_v1_monitor_without_a_config_is_not_taken_for_an_autoscaler():
    from distmeta.runtime.autoscaling import reports_node_types

    # `ray.init()` / `ray start` alone: each node its own read-only type
    assert not reports_node_types({"node_type_mapping": {"3e63dca3": "node_3e63dca3"}})
    assert not reports_node_types({})
    # an autoscaler with a config names the head's node type
    assert reports_node_types({"node_type_mapping": {"ffff0000": "ray.head.default"}})


def test_a_node_type_without_a_limit_leaves_the_maximum_unknown():
    cluster = ClusterCapacity((HEAD,), (NodeShape("gpu", cpus=4, gpus=1, count=None),), autoscaling=True)
    assert workers_at_most(cluster, GPU_WORKER) is None
    check_within_maximum(cluster, GPU_WORKER, 100, "--workers")
    # a type that cannot hold the worker does not matter, limited or not
    cpu_only = ClusterCapacity((HEAD,), (NodeShape("gpu", 4, 1, 2), NodeShape("cpu", 8, 0, None)), autoscaling=True)
    assert workers_at_most(cpu_only, GPU_WORKER) == 2
