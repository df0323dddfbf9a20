"""What a Ray cluster can hold, node by node, now and once its autoscaler has grown it.

Pure arithmetic on node shapes (no Ray here: `distmeta.runtime.autoscaling` reads the
shapes from a running cluster). A worker is one bundle of CPUs and GPUs that must sit on
a single node, so fitting is counted per node, never on the cluster's summed resources:
two nodes of 1 GPU each hold no worker that asks for 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from distmeta.errors import ConfigError


@dataclass(frozen=True)
class WorkerShape:
    """The resources one worker holds on its node."""

    cpus: float
    gpus: float

    def __str__(self) -> str:
        return f"({self.cpus:g} CPU, {self.gpus:g} GPU)"


@dataclass(frozen=True)
class NodeShape:
    """A live node, or a node type the autoscaler may start `count` of."""

    name: str
    cpus: float | None
    """None: the node type does not declare its CPUs (the autoscaler fills them in from the
    instance type, as on AWS): not counted as a limit."""
    gpus: float
    count: int | None = 1
    """None: a node type without a limit."""

    def __str__(self) -> str:
        cpus = "? CPU" if self.cpus is None else f"{self.cpus:g} CPU"
        return f"{self.name} ({cpus}, {self.gpus:g} GPU)"


@dataclass(frozen=True)
class ClusterCapacity:
    nodes: tuple[NodeShape, ...]
    """The live nodes, each with its total resources."""
    node_types: tuple[NodeShape, ...] = ()
    """The worker node types the autoscaler can start, each with its max_workers as count."""
    max_worker_nodes: int | None = None
    """The autoscaler's cluster-wide max_workers (worker nodes of all types), if any."""
    autoscaling: bool = False
    """An autoscaler runs; with no node_types, what it can start is unknown."""


def workers_per_node(node: NodeShape, worker: WorkerShape) -> int | None:
    """How many workers of this shape one node of `node`'s shape holds; None when nothing
    the node declares limits them (a CPU worker on a node type that leaves its CPUs to
    the instance type)."""
    fits = math.inf
    if worker.cpus > 0 and node.cpus is not None:
        fits = min(fits, math.floor(node.cpus / worker.cpus + 1e-9))
    if worker.gpus > 0:
        fits = min(fits, math.floor(node.gpus / worker.gpus + 1e-9))
    return None if math.isinf(fits) else int(fits)


def workers_now(capacity: ClusterCapacity, worker: WorkerShape) -> int:
    """Workers of this shape the live nodes hold at once (whatever else they run); a live
    node declares its CPUs, so only a worker asking for nothing is unlimited (counted 0)."""
    return sum(workers_per_node(node, worker) or 0 for node in capacity.nodes)


def workers_at_most(capacity: ClusterCapacity, worker: WorkerShape) -> int | None:
    """Workers of this shape the cluster holds once grown to its maximum; None when unknown
    (node types not readable, or not declaring what would limit this worker).

    The maximum is the head node plus every worker node type at its max_workers, the
    most useful types first where the cluster-wide max_workers binds. Live worker nodes
    are taken to be the autoscaler's (they count within their type's max_workers); a
    cluster holding more now than that view (nodes added by hand) holds what it holds.
    """
    now = workers_now(capacity, worker)
    if not capacity.autoscaling:
        return now
    if not capacity.node_types:
        return None
    per_type: list[tuple[int, int]] = []  # (workers a node holds, nodes of the type)
    for node_type in capacity.node_types:
        fits = workers_per_node(node_type, worker)
        if fits is None or (fits and node_type.count is None):
            return None
        per_type.append((fits, node_type.count or 0))
    grown = sum(workers_per_node(node, worker) or 0 for node in capacity.nodes if node.name == "head")
    nodes_left = capacity.max_worker_nodes if capacity.max_worker_nodes is not None else math.inf
    for fits, count in sorted(per_type, key=lambda fits_count: -fits_count[0]):
        started = int(min(count, nodes_left))
        grown += started * fits
        nodes_left -= started
    return max(now, grown)


def check_worker_fits_a_node(capacity: ClusterCapacity, worker: WorkerShape, field: str) -> None:
    """Refuse a worker no live node and no node type can hold, listing what they hold."""
    if any(_may_hold(shape, worker) for shape in capacity.nodes + capacity.node_types):
        return
    if capacity.autoscaling and not capacity.node_types:
        return  # the autoscaler may start a node type we cannot see
    raise ConfigError(
        field, f"one worker {worker} fits on no node, and a worker cannot span nodes; {describe(capacity)}"
    )


def _may_hold(shape: NodeShape, worker: WorkerShape) -> bool:
    fits = workers_per_node(shape, worker)
    return fits is None or fits >= 1


def check_within_maximum(
    capacity: ClusterCapacity, worker: WorkerShape, workers: int, field: str, what: str = ""
) -> None:
    """Refuse `workers` workers beyond what the cluster can ever hold at once."""
    check_worker_fits_a_node(capacity, worker, field)
    most = workers_at_most(capacity, worker)
    if most is None or workers <= most:
        return
    grows = " even when the autoscaler has grown it" if capacity.autoscaling else ""
    raise ConfigError(
        field,
        f"{what or f'{workers} worker(s)'} x {worker} do not fit: the cluster holds at most "
        f"{most} such worker(s){grows}; {describe(capacity)}",
    )


def describe(capacity: ClusterCapacity) -> str:
    """What the cluster has and can start, in words for an error message."""
    text = f"its nodes now: {', '.join(str(node) for node in capacity.nodes) or 'none'}"
    if capacity.node_types:
        types = ", ".join(f"up to {'any number' if t.count is None else t.count} x {t}" for t in capacity.node_types)
        cap = (
            f" (at most {capacity.max_worker_nodes} worker nodes in all)"
            if capacity.max_worker_nodes is not None
            else ""
        )
        return f"{text}; the autoscaler can add {types}{cap}"
    if capacity.autoscaling:
        return f"{text}; an autoscaler runs, but its node types could not be read"
    return f"{text}; no autoscaler: the cluster does not grow"
