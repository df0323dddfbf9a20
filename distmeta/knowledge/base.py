"""`KnowledgeBase`: the records of one step of a run, searchable, and warm starts from them.

A warm start for a new task is the similarity-weighted mean of what adaptation learned on its
k nearest stored tasks (their adapted parameters less the meta-parameters), added to the
meta-parameters: adaptation then starts where similar tasks ended rather than at the plain
initialisation. The weights are inverse distances (k-NN regression's), normalised to sum to 1,
so that a stored task at distance ~0 takes almost all of the weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from distmeta.errors import KnowledgeBaseError
from distmeta.knowledge.records import StoreHeader, TaskRecords, split_delta
from distmeta.knowledge.search import ExactIndex
from distmeta.knowledge.store import KnowledgeStore
from distmeta.storage import Location

INVERSE_DISTANCE_FLOOR = 1e-6
"""Added to distances before inverting them, so that an exact match does not divide by zero."""


@dataclass(frozen=True)
class SimilarTask:
    """A stored task near a query, with its distance and what the store knows of it."""

    distance: float
    task_index: int
    task_seed: int
    split: str
    family: str | None
    loss_before: float
    loss_after: float
    score_before: float
    score_after: float


class KnowledgeBase:
    """The records of one meta-parameters' step, with an exact index over their embeddings."""

    def __init__(self, header: StoreHeader, records: TaskRecords, metric: str = "euclidean", source: str = ""):
        self.header = header
        self.records = records
        self.index = ExactIndex(records.embedding, metric)
        self.source = source

    @staticmethod
    def open(run_dir: str | Path | Location, config_hash: str, step: int, metric: str = "euclidean") -> KnowledgeBase:
        store = KnowledgeStore(run_dir)
        header, records = store.load(config_hash, step)
        return KnowledgeBase(header, records, metric, str(store.folder))

    def __len__(self) -> int:
        return len(self.records)

    def nearest(self, embedding: torch.Tensor, k: int) -> list[SimilarTask]:
        """The `k` stored tasks nearest `embedding`, nearest first."""
        found = self.index.search(embedding, k)
        return [self._similar(int(row), float(distance))
                for row, distance in zip(found.indices[0], found.distances[0])]

    def _similar(self, row: int, distance: float) -> SimilarTask:
        metrics = {name: float(value[row]) for name, value in self.records.metrics.items()}
        return SimilarTask(distance, self.records.task_index[row], self.records.task_seed[row],
                           self.records.split[row], self.records.family[row], **metrics)

    def warm_start_delta(self, embedding: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
        """The inverse-distance-weighted mean delta of the `k` nearest stored tasks, by parameter name."""
        if self.header.delta_size == 0:
            raise KnowledgeBaseError(self.source, "its records keep no adapted parameters (an algorithm "
                                                  "without an inner loop, such as protonet): nothing to "
                                                  "warm-start from")
        found = self.index.search(embedding, k)
        weights = 1.0 / (found.distances[0].double() + INVERSE_DISTANCE_FLOOR)
        weights = weights / weights.sum()
        deltas = self.records.adapted_delta[found.indices[0]].double()
        mean = (weights.unsqueeze(1) * deltas).sum(dim=0)
        return split_delta(self.header, mean)
