"""Requests an autoscaling cluster can grow into, on Ray's fake autoscaling cluster.

The cluster starts with a one-CPU head and no GPU node; its autoscaler may add up to
four "GPU" nodes (one CPU and one logical GPU each, no real GPU) and up to two
two-CPU nodes. Workers train on CPU (`train.device: cpu`) with the GPU Ray gave them.
"""

import json
import time

import pytest
import ray

from distmeta.cli import main
from distmeta.config import load_config
from distmeta.errors import ConfigError, ScaleUpTimeoutError
from distmeta.runtime.autoscaling import AUTOSCALER_CONFIG_ENV, read_capacity
from distmeta.runtime.capacity import WorkerShape, workers_now
from distmeta.runtime.launcher import ClusterRequest, train_distributed, with_gpus_decided
from distmeta.tuning.search import TuneRequest, run_search
from distmeta.tuning.space import parse_space
from tests.autoscaling_cluster import LocalAutoscalingCluster

pytestmark = pytest.mark.slow

NODE_TYPES = {
    "gpu": {"resources": {"CPU": 1, "GPU": 1}, "node_config": {}, "min_workers": 0, "max_workers": 4},
    "cpu": {"resources": {"CPU": 2}, "node_config": {}, "min_workers": 0, "max_workers": 2},
}
TINY = [
    "train.device=cpu",
    "train.steps=3",
    "train.meta_batch_size=8",
    "train.log_every=3",
    "train.val_every=0",
    "train.checkpoint_every=3",
    "model.hidden_sizes=[8, 8]",
]


def started_cluster(ray_home, short_folder):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(ray_home))
        cluster = LocalAutoscalingCluster({"CPU": 1}, NODE_TYPES, short_folder("as-"))
        # where `ray up` would have put the autoscaler's config on the head node
        patch.setenv(AUTOSCALER_CONFIG_ENV, str(cluster.config_file))
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.shutdown()


@pytest.fixture(scope="module")
def autoscaling_cluster(ray_home, short_folder):
    """For requests refused before anything is asked of the autoscaler: it stays at its head."""
    yield from started_cluster(ray_home, short_folder)


@pytest.fixture
def fresh_autoscaling_cluster(ray_home, short_folder):
    """For requests that grow the cluster: one that has not grown yet."""
    yield from started_cluster(ray_home, short_folder)


def standing_request(cluster) -> list:
    """The bundles the cluster's autoscaler is asked for (v1 keeps them in the GCS's key-value store)."""
    from ray._raylet import GcsClient

    return json.loads(GcsClient(address=cluster.address).internal_kv_get(b"autoscaler_resource_request", None))


def train(cluster, storage, workers, gpus=1, cpus=1, lines=None):
    request = ClusterRequest(
        workers=workers,
        gpus_per_worker=gpus,
        cpus_per_worker=cpus,
        address=cluster.address,
        storage=str(storage),
        name="run",
        scale_timeout_s=120,
    )
    print_fn = lines.append if lines is not None else (lambda *_: None)
    return train_distributed(load_config(None, TINY), request, print_fn=print_fn, final_eval=False)


def test_four_gpu_workers_on_a_cluster_with_no_gpu_node_yet_scale_it_up_and_train(fresh_autoscaling_cluster, tmp_path):
    lines = []
    result = train(fresh_autoscaling_cluster, tmp_path, 4, lines=lines)
    assert result.steps == 3
    assert result.summary["gpus_per_worker"] == 1 and result.summary["nodes"] == 4
    assert result.summary["devices"] == ["cpu"] * 4  # train.device: cpu, whatever GPU Ray assigned
    assert "waiting for the autoscaler: 0 of 4 GPU workers' resources available" in "\n".join(lines)
    assert any(line.startswith("the autoscaler provided them: 4 of 4") for line in lines)
    assert standing_request(fresh_autoscaling_cluster) == []  # withdrawn once it had served


def test_five_gpu_workers_are_refused_at_once_naming_the_maximum(autoscaling_cluster, tmp_path):
    started = time.monotonic()
    with pytest.raises(
        ConfigError,
        match=r"--workers: 5 worker\(s\) x \(1 CPU, 1 GPU\) do not fit: the cluster holds "
        r"at most 4 such worker\(s\) even when the autoscaler has grown it; .*"
        r"up to 4 x gpu \(1 CPU, 1 GPU\)",
    ):
        train(autoscaling_cluster, tmp_path, 5)
    assert time.monotonic() - started < 60  # refused, not waited for (the scale timeout: 120 s)
    assert not (tmp_path / "run").exists() or not list((tmp_path / "run").glob("checkpoint_*"))


def test_a_worker_no_node_type_holds_is_refused_though_the_cluster_could_reach_enough_cpus(
    autoscaling_cluster, tmp_path
):
    # 1 + 4 x 1 + 2 x 2 = 9 CPUs at most, but no node has 3
    with pytest.raises(ConfigError, match=r"--workers: one worker \(3 CPU, 0 GPU\) fits on no node"):
        train(autoscaling_cluster, tmp_path, 1, gpus=0, cpus=3)


def test_without_gpus_per_worker_the_gpus_the_autoscaler_can_add_are_used_and_cpu_training_is_said(autoscaling_cluster):
    ray.init(address=autoscaling_cluster.address, log_to_driver=False)
    try:
        capacity = read_capacity()
    finally:
        ray.shutdown()
    assert capacity.autoscaling and workers_now(capacity, WorkerShape(1, 1)) == 0
    four, note = with_gpus_decided(ClusterRequest(workers=4, gpus_per_worker=None), capacity)
    assert four.gpus_per_worker == 1 and "a GPU per worker" in note
    five, note = with_gpus_decided(ClusterRequest(workers=5, gpus_per_worker=None), capacity)
    assert five.gpus_per_worker == 0
    assert note == " (on CPU: the cluster holds 4 one-GPU worker(s), not 5)"


def test_a_search_of_two_gpu_worker_trials_waits_for_the_autoscaler(fresh_autoscaling_cluster, tmp_path):
    base = load_config(None, TINY)
    space = parse_space({"algorithm.inner_lr": {"grid": [0.01]}}, base)
    request = TuneRequest(
        trials=1,
        workers_per_trial=2,
        gpus_per_worker=1,
        scheduler="fifo",
        address=fresh_autoscaling_cluster.address,
        storage=str(tmp_path),
        name="search",
        scale_timeout_s=120,
    )
    lines = []
    result = run_search(base, space, request, print_fn=lines.append)
    assert [outcome.status for outcome in result.ranked] == ["finished"], result.ranked
    text = "\n".join(lines)
    assert "1 trial(s) at a time, each 2 worker(s) x (1 CPU, 1 GPU)" in text
    assert "waiting for the autoscaler: 0 of 2 first trial's workers' resources available" in text
    assert standing_request(fresh_autoscaling_cluster) == []


def test_an_autoscaler_whose_node_types_cannot_be_read_is_asked_and_its_timeout_names_what_is_missing(
    autoscaling_cluster, tmp_path, monkeypatch
):
    monkeypatch.delenv(AUTOSCALER_CONFIG_ENV)
    lines = []
    # no node type holds a (2 CPU, 1 GPU) worker, but without the node types only the wait can tell
    with pytest.raises(
        ScaleUpTimeoutError,
        match=r"the autoscaler did not provide 1 worker\(s\) x \(2 CPU, 1 GPU\) "
        r"within 3 s: 0 available, 1 missing.*node types could not be read",
    ):
        train_distributed(
            load_config(None, TINY),
            ClusterRequest(
                workers=1,
                gpus_per_worker=1,
                cpus_per_worker=2,
                address=autoscaling_cluster.address,
                storage=str(tmp_path),
                name="run",
                scale_timeout_s=3,
            ),
            print_fn=lines.append,
            final_eval=False,
        )
    assert "waiting for the autoscaler: 0 of 1 GPU workers' resources available" in "\n".join(lines)


BENCH = [
    "bench",
    "--task",
    "sine",
    "--gpus-per-worker",
    "1",
    "--steps",
    "1",
    "--warmup",
    "0",
    "--meta-batch",
    "2",
    "--scale-timeout",
    "120",
    "--set",
    "train.device=cpu",
    "--set",
    "model.hidden_sizes=[8, 8]",
]


def test_a_bench_worker_count_beyond_the_maximum_is_refused_at_once(autoscaling_cluster, tmp_path, capsys):
    assert (
        main(
            [
                *BENCH,
                "--workers",
                "1,8",
                "--address",
                autoscaling_cluster.address,
                "--json",
                str(tmp_path / "bench.json"),
            ]
        )
        == 2
    )
    assert (
        "--workers: 8 worker(s) x (1 CPU, 1 GPU) do not fit: the cluster holds at most 4 such worker(s) even "
        "when the autoscaler has grown it"
    ) in capsys.readouterr().err


def test_a_bench_of_gpu_worker_counts_waits_for_the_autoscaler_then_measures(
    fresh_autoscaling_cluster, tmp_path, capsys
):
    out = tmp_path / "bench.json"
    assert main([*BENCH, "--workers", "1,2", "--address", fresh_autoscaling_cluster.address, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "waiting for the autoscaler: 0 of 2 GPU workers' resources available" in printed
    assert [result["workers"] for result in json.loads(out.read_text())["results"]] == [1, 2]
    assert standing_request(fresh_autoscaling_cluster) == []  # withdrawn when the bench ended
