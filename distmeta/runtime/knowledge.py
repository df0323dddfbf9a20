"""The knowledge base on Ray: its index served by an actor, and builds shared among workers.

Serving: the actor holds one `ExactIndex` (distmeta.knowledge.search: the math lives there, not here)
and answers `search` calls from any number of clients at once: it is a threaded actor
(`max_concurrency`), and a search only reads the index's matrices, so concurrent calls need no
lock. Embeddings travel as numpy arrays (Ray's zero-copy path for the object store).

Building: `build_on_ray` runs `distmeta kb build`'s own `write_shard` in one Ray task per
worker; each appends its shard as its own file, so the records are gathered in the store (no
reduction), and they are those one writer makes (tasks are seeded by index alone).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import ray
import torch

from distmeta.knowledge.search import ExactIndex, Neighbours

if TYPE_CHECKING:
    from distmeta.knowledge.commands import BuildRequest


class KnowledgeIndexActor:
    """An `ExactIndex` in an actor; `search` returns (distances, indices) as numpy arrays."""

    def __init__(self, embeddings: np.ndarray, metric: str, torch_threads: int):
        torch.set_num_threads(torch_threads)
        self.index = ExactIndex(torch.from_numpy(np.ascontiguousarray(embeddings)), metric)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        found = self.index.search(torch.from_numpy(np.ascontiguousarray(queries)), k)
        return found.distances.numpy(), found.indices.numpy()

    def size(self) -> tuple[int, int]:
        """(stored rows, bytes the index's matrices take)."""
        return len(self.index), self.index.nbytes


class ServedIndex:
    """A client's handle on a served index: `search` as `ExactIndex.search`, over Ray."""

    def __init__(self, actor):
        self.actor = actor

    def search(self, queries: torch.Tensor, k: int) -> Neighbours:
        return self.result(self.submit(queries, k))

    def submit(self, queries: torch.Tensor, k: int) -> ray.ObjectRef:
        """Send a search without waiting (many clients, or one client pipelining requests)."""
        return self.actor.search.remote(queries.float().reshape(len(queries), -1).numpy(), k)

    @staticmethod
    def result(reference: ray.ObjectRef) -> Neighbours:
        distances, indices = ray.get(reference)
        # ray.get's arrays are read-only views of the object store; torch wants its own memory
        return Neighbours(torch.from_numpy(distances.copy()), torch.from_numpy(indices.copy()))

    def stop(self) -> None:
        ray.kill(self.actor)


def serve_index(
    embeddings: torch.Tensor,
    metric: str = "cosine",
    max_concurrency: int = 4,
    num_cpus: float = 1,
    torch_threads: int = 1,
) -> ServedIndex:
    """Start an actor holding an exact index of `embeddings` (on the Ray cluster already
    initialised) and return a handle once it is ready: a bad input fails here, not at the first query."""
    remote = ray.remote(num_cpus=num_cpus, max_concurrency=max_concurrency)(KnowledgeIndexActor)
    actor = remote.remote(embeddings.float().numpy(), metric, torch_threads)
    ray.get(actor.size.remote())
    return ServedIndex(actor)


def build_on_ray(
    run_dir: Path, request: BuildRequest, workers: int, address: str | None = None, cpus_per_worker: float = 1
) -> list[tuple[str, int]]:
    """Shard w of `workers` built and written by Ray task w; (path, rows) of each file, by rank.
    Uses the Ray cluster already initialised, else `address`, else starts (and stops) a local one."""
    started_here = not ray.is_initialized()
    if started_here and address:
        ray.init(address=address, log_to_driver=False)
    elif started_here:
        ray.init(
            address="local",
            num_cpus=max(1, int(workers * cpus_per_worker)),
            include_dashboard=False,
            log_to_driver=False,
        )
    try:
        task = ray.remote(num_cpus=cpus_per_worker)(write_shard_in_worker)
        return ray.get([task.remote(str(run_dir), request, rank) for rank in range(workers)])
    finally:
        if started_here:
            ray.shutdown()


def write_shard_in_worker(run_dir: str, request: BuildRequest, rank: int) -> tuple[str, int]:
    from distmeta.api import load  # imported in the worker: the driver sends only the function
    from distmeta.knowledge.commands import write_shard

    torch.set_num_threads(1)  # one shard per CPU slot
    return write_shard(load(run_dir, device="cpu"), request, rank)
