"""A node lost mid-run on a two-node local Ray cluster (`ray.cluster_utils.Cluster`, loopback).

The head (1 CPU) runs the driver; a placeholder actor holds its CPU while the run starts,
so that the run's one worker lands on the second node. The worker stops before update
HOLD_AT (checkpoints every 4 steps: the last one is of step 8), and the test removes its
node there. The run must end finished, having redone exactly the steps since that
checkpoint (9 and 10), either on the head (the placeholder gone, it holds the worker) or
on a node added afterwards (capacity returns); a node that never returns stops the run
with a clear error once `--scale-timeout` has passed, instead of a run waiting for ever.
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

import distmeta.runtime.launcher
from benchmarks import faults
from distmeta.config import load_config
from distmeta.errors import RecoveryFailedError
from distmeta.runtime.launcher import ClusterRequest, train_distributed
from tests.ray_processes import leaves_no_ray_process

pytestmark = pytest.mark.slow  # starts a Ray cluster of its own

HOLD_AT = 10
RUN = [
    "train.steps=12",
    "train.meta_batch_size=4",
    "train.log_every=1",
    "train.val_every=0",
    "train.checkpoint_every=4",
    "model.hidden_sizes=[8]",
]
REDONE = [9, 10]  # the updates after the checkpoint of step 8, up to the hold: logged twice


@pytest.fixture(scope="module")
def head(ray_home, short_folder, temp_roots):
    """A head node of one CPU, the driver connected to it; each test adds (and removes) its second node."""
    with pytest.MonkeyPatch.context() as patch, leaves_no_ray_process(temp_roots, "the module's Ray cluster"):
        patch.setenv("HOME", str(ray_home))
        temp_dir = short_folder("ray-")
        try:
            cluster = Cluster(
                initialize_head=True,
                head_node_args={"num_cpus": 1, "include_dashboard": False, "temp_dir": str(temp_dir)},
            )
        except RuntimeError:
            print_ray_logs(temp_dir)
            raise
        try:
            ray.init(address=cluster.address, log_to_driver=False)
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()


def print_ray_logs(temp_dir: Path) -> None:
    """Why a node did not start: the tails of its processes' logs, and the environment it inherited."""
    import os

    print("environment:", {k: v for k, v in os.environ.items() if k.startswith(("RAY", "AWS", "GRPC", "OMP", "TORCH"))})
    for log in sorted(temp_dir.glob("session_*/logs/*")):
        if log.suffix in (".out", ".err", ".log") and log.stat().st_size:
            print(f"--- {log.name}:", log.read_text(errors="replace")[-3000:])


@pytest.fixture(autouse=True)
def _nodes_find_the_drivers_token(ray_home, monkeypatch):
    """Nodes added during a test start under the home the head started under (not the test's
    own): once any `ray.init(address="local")` of this test process has set RAY_AUTH_MODE=token
    (Ray leaves it set after shutdown), a node started where ~/.ray/auth_token is missing stops
    at once ("Token authentication is enabled but Ray couldn't find an authentication token"),
    which Ray reported as a timeout waiting for the node."""
    monkeypatch.setenv("HOME", str(ray_home))


@ray.remote(num_cpus=1)
class Placeholder:
    """Holds a node's CPU."""

    def ready(self) -> bool:
        return True


def head_taken():
    """A placeholder holding the head's CPU (the driver runs on the head)."""
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    placeholder = Placeholder.options(scheduling_strategy=here).remote()
    ray.get(placeholder.ready.remote())
    return placeholder


def run_losing_the_second_node(cluster: Cluster, storage: Path, monkeypatch, when_removed, **request):
    """Run RUN on one worker placed on a second node; when the worker holds before update
    HOLD_AT, remove that node, then call `when_removed(placeholder)`. Returns what the run
    returned, or raises what it raised. The run goes on in a thread: Ray adds a node from
    the main thread only."""
    second = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    placeholder = head_taken()
    monkeypatch.setattr(distmeta.runtime.launcher, "train_worker", faults.held_worker(HOLD_AT))
    run_dir = storage / "lost"
    request = {"scale_timeout_s": 120, **request}  # a test gone wrong fails, rather than waiting 15 minutes
    runner = ThreadPoolExecutor(1)
    try:
        run = runner.submit(
            train_distributed,
            load_config(None, RUN),
            ClusterRequest(workers=1, storage=str(storage), name="lost", **request),
            print_fn=lambda *_: None,
            final_eval=False,
        )
        assert faults.wait_for(faults.marker(run_dir, faults.HELD), 300), run.exception() if run.done() else "no hold"
        workers = json.loads((run_dir / "workers.json").read_text())
        assert [w["node"] for w in workers] == [second.node_id], "the worker is not on the second node"
        cluster.remove_node(second)
        when_removed(placeholder)
        return run.result(timeout=300)
    finally:
        runner.shutdown(wait=False)
        ray.kill(placeholder)
        for node in list(cluster.worker_nodes):
            cluster.remove_node(node)


def logged_steps(run_dir: Path) -> list:
    return [
        record.get("step", record.get("event"))
        for record in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
    ]


def steps_logged_twice(run_dir: Path) -> list[int]:
    return sorted(step for step, times in Counter(logged_steps(run_dir)).items() if times == 2)


def resumed_from(run_dir: Path) -> list[int]:
    records = map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
    return [record["from_step"] for record in records if record.get("event") == "resumed"]


def test_a_lost_nodes_worker_restarts_on_the_remaining_node_redoing_only_the_steps_since_the_checkpoint(
    head, tmp_path, monkeypatch
):
    # case: the remaining node holds the workers (the head's CPU is freed as the node goes)
    result = run_losing_the_second_node(head, tmp_path, monkeypatch, lambda placeholder: ray.kill(placeholder))
    assert result.steps == 12
    assert resumed_from(result.run_dir) == [8]
    assert steps_logged_twice(result.run_dir) == REDONE  # 2 steps redone: 9 and 10
    workers = json.loads((result.run_dir / "workers.json").read_text())
    assert [w["node"] for w in workers] == [ray.get_runtime_context().get_node_id()], "not restarted on the head"


def test_a_lost_nodes_worker_waits_for_capacity_to_return_then_finishes_redoing_only_the_steps_since_the_checkpoint(
    head, tmp_path, monkeypatch
):
    # case: the head stays full; the worker restarts once a node is added back
    added = []
    result = run_losing_the_second_node(
        head, tmp_path, monkeypatch, lambda placeholder: added.append(head.add_node(num_cpus=1))
    )
    assert result.steps == 12
    assert resumed_from(result.run_dir) == [8]
    assert steps_logged_twice(result.run_dir) == REDONE
    workers = json.loads((result.run_dir / "workers.json").read_text())
    assert [w["node"] for w in workers] == [added[0].node_id], "not restarted on the node added back"


def test_a_node_lost_for_good_stops_the_run_after_the_scale_timeout_naming_the_checkpoint_it_resumes_from(
    head, tmp_path, monkeypatch
):
    # case: no capacity returns; each placement attempt waits 3 s, --scale-timeout 6 s allows two
    monkeypatch.setenv("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "3")
    with pytest.raises(RecoveryFailedError) as raised:
        run_losing_the_second_node(head, tmp_path, monkeypatch, lambda placeholder: None, scale_timeout_s=6)
    assert raised.value.resume_step == 8
    assert str(raised.value).startswith(
        "the cluster did not hold the 1 worker(s) x (1 CPU, 0 GPU) within --scale-timeout 6 s (a node lost mid-run, "
        "or its resources taken): its nodes now: head (1 CPU, 0 GPU); no autoscaler: the cluster does not grow"
    )
    assert str(raised.value).endswith("the checkpoint of step 8 is kept: the same command resumes from it")
