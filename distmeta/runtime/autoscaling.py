"""Reading what the connected Ray cluster can hold, and asking its autoscaler for more.

What the cluster can grow to is read, in this order, from:
1. the cluster config the autoscaler publishes in the GCS (what Ray Train itself checks
   a worker group against; set where the autoscaler reports it);
2. the autoscaler's own config file: `$DISTMETA_AUTOSCALER_CONFIG`, else
   `~/ray_bootstrap_config.yaml`, where `ray up` puts it on the head node (a job
   submitted to the cluster, and `--address auto` on the head, run there);
3. on KubeRay, the RayCluster resource, read from Kubernetes as KubeRay's autoscaler
   reads it (`RAY_CLUSTER_NAME` and `RAY_CLUSTER_NAMESPACE` are set in every Ray pod;
   the head pod's service account may read its RayCluster when autoscaling is on).
An autoscaler whose node types none of these gives is still asked for the workers: the
wait's timeout then says no.

The request (`ray.autoscaler.sdk.request_resources`) is the cluster's one standing
request (a later call, from any driver, replaces it), so it is withdrawn as soon as it has
served: once the resources are there, a run's own placement group holds them (and, while
pending, is demand the autoscaler meets by itself). A bench, whose smaller worker counts
leave nodes idle for a while before the larger ones need them again, holds it to the end.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ray
import yaml
from ray._private import ray_constants, state
from ray.autoscaler import sdk as autoscaler_sdk

from distmeta.errors import ScaleUpTimeoutError
from distmeta.runtime.capacity import ClusterCapacity, NodeShape, WorkerShape, describe, workers_now

AUTOSCALER_CONFIG_ENV = "DISTMETA_AUTOSCALER_CONFIG"
RAY_UP_CONFIG = "~/ray_bootstrap_config.yaml"
HEAD_RESOURCE = "node:__internal_head__"
POLL_S = 1.0


def read_capacity() -> ClusterCapacity:
    """The connected cluster's live nodes and, if it autoscales, the node types it can add."""
    nodes = live_nodes()
    if not autoscaler_runs():
        return ClusterCapacity(nodes)
    node_types, max_worker_nodes = (
        _node_types_from_gcs() or _node_types_from_file() or _node_types_from_kuberay() or ((), None)
    )
    return ClusterCapacity(nodes, node_types, max_worker_nodes, autoscaling=True)


def live_nodes() -> tuple[NodeShape, ...]:
    return tuple(_live_node(node) for node in ray.nodes() if node.get("Alive"))


def _live_node(node: dict) -> NodeShape:
    resources = node.get("Resources", {})
    name = "head" if HEAD_RESOURCE in resources else f"node {node['NodeID'][-8:]}"
    return NodeShape(name, resources.get("CPU", 0.0), resources.get("GPU", 0.0))


def autoscaler_runs() -> bool:
    """Whether an autoscaler manages the cluster: v2 says so in the GCS; v1 reports its
    node types in the GCS's key-value store."""
    from ray.autoscaler.v2.utils import is_autoscaler_v2
    from ray.experimental.internal_kv import _internal_kv_get

    try:
        if is_autoscaler_v2(fetch_from_server=True):
            return True
    except Exception:  # an older or unreachable GCS: fall back to v1's report
        pass
    status = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
    return bool(status) and reports_node_types(json.loads(status).get("autoscaler_report") or {})


def reports_node_types(report: dict) -> bool:
    """Whether a v1 autoscaler report comes from an autoscaler with a config.

    Every cluster's head runs v1's monitor; without a config (`ray start` or `ray.init()`
    alone) it reports each node as a type of its own named `node_<node id>`, and can add
    nothing. An autoscaler with a config names the head by its node type.
    """
    mapping = report.get("node_type_mapping") or {}
    return any(node_type != f"node_{node_id}" for node_id, node_type in mapping.items())


def _node_types_from_gcs() -> tuple[tuple[NodeShape, ...], int | None] | None:
    config = state.state.get_cluster_config()
    if config is None or not config.node_group_configs:
        return None
    types = tuple(
        NodeShape(
            group.name,
            group.resources.get("CPU"),
            group.resources.get("GPU", 0.0),
            None if group.max_count == -1 else group.max_count,
        )
        for group in config.node_group_configs
        if group.max_count != 0
    )
    return types, None


def _node_types_from_file() -> tuple[tuple[NodeShape, ...], int | None] | None:
    path = Path(os.environ.get(AUTOSCALER_CONFIG_ENV) or RAY_UP_CONFIG).expanduser()
    if not path.is_file():
        return None
    return node_types_of(yaml.safe_load(path.read_text()))


def _node_types_from_kuberay() -> tuple[tuple[NodeShape, ...], int | None] | None:
    name, namespace = os.environ.get("RAY_CLUSTER_NAME"), os.environ.get("RAY_CLUSTER_NAMESPACE")
    if not (name and namespace):
        return None
    from ray.autoscaler._private.kuberay.autoscaling_config import AutoscalingConfigProducer

    try:
        return node_types_of(AutoscalingConfigProducer(name, namespace)())
    except Exception:  # no permission to read the RayCluster, or no API server: the maximum stays unknown
        return None


def node_types_of(config: dict) -> tuple[tuple[NodeShape, ...], int | None]:
    """The worker node types of a `ray up` / autoscaler config, and its cluster-wide max_workers."""
    max_worker_nodes = config.get("max_workers")
    types = []
    for name, node_type in config.get("available_node_types", {}).items():
        if name == config.get("head_node_type"):
            continue
        resources = node_type.get("resources") or {}
        count = node_type.get("max_workers", max_worker_nodes)  # None: no limit given
        if count != 0:
            types.append(NodeShape(name, resources.get("CPU"), resources.get("GPU", 0), count))
    return tuple(types), max_worker_nodes


def provide_workers(
    worker: WorkerShape, workers: int, timeout_s: float, print_fn=print, wanted: int | None = None, label: str = ""
) -> ClusterCapacity:
    """Return once the live nodes hold `workers` workers of this shape, asking the
    autoscaler for them and waiting if they do not yet; the request is then withdrawn.

    `wanted` (default `workers`) is how many workers' resources to ask for: a search
    asks for every concurrent trial's but starts once one trial's are there.
    """
    with workers_provided(worker, workers, timeout_s, print_fn, wanted, label) as capacity:
        return capacity


@contextmanager
def workers_provided(
    worker: WorkerShape, workers: int, timeout_s: float, print_fn=print, wanted: int | None = None, label: str = ""
) -> Iterator[ClusterCapacity]:
    """As `provide_workers`, but the request stands until the end of the `with` block."""
    capacity = read_capacity()
    if workers_now(capacity, worker) >= workers:
        yield capacity
        return
    if not capacity.autoscaling:  # the callers refused this already; kept as a guard
        raise ScaleUpTimeoutError(
            f"{workers} worker(s) x {worker} do not fit and the cluster does not grow ({describe(capacity)})"
        )
    bundle = {"CPU": worker.cpus, **({"GPU": worker.gpus} if worker.gpus else {})}
    autoscaler_sdk.request_resources(bundles=[bundle] * (wanted or workers))
    try:
        yield wait_for_workers(capacity, worker, workers, timeout_s, print_fn, label)
    finally:
        autoscaler_sdk.request_resources(bundles=[])


def wait_for_workers(
    capacity: ClusterCapacity, worker: WorkerShape, workers: int, timeout_s: float, print_fn=print, label: str = ""
) -> ClusterCapacity:
    """Poll the live nodes until they hold `workers` workers; a line at every change."""
    kind = label or ("GPU workers'" if worker.gpus else "workers'")
    started = time.monotonic()
    said = None
    while True:
        capacity = dataclasses.replace(capacity, nodes=live_nodes())
        available = min(workers_now(capacity, worker), workers)
        if available >= workers:
            print_fn(
                f"the autoscaler provided them: {workers} of {workers} {kind} resources available "
                f"after {time.monotonic() - started:.0f} s"
            )
            return capacity
        waited = time.monotonic() - started
        if waited > timeout_s:
            raise ScaleUpTimeoutError(
                f"the autoscaler did not provide {workers} worker(s) x {worker} within {timeout_s:g} s: "
                f"{available} available, {workers - available} missing ({describe(capacity)}); "
                f"see `ray status` on the head node, or wait longer with --scale-timeout"
            )
        if available != said:
            print_fn(
                f"waiting for the autoscaler: {available} of {workers} {kind} resources available "
                f"({waited:.0f} s of at most {timeout_s:g} s)"
            )
            said = available
        time.sleep(POLL_S)
