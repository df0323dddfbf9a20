"""`KnowledgeBase`: the records of one step of a run, searchable, and warm starts from them.

A warm start for a new task is a weighted mean of what adaptation learned on stored tasks
near it (their adapted parameters less the meta-parameters), added to the meta-parameters:
adaptation then starts where similar tasks ended rather than at the plain initialisation.
The weights (`distmeta.knowledge.warm_start`) are the k nearest tasks' inverse embedding
distances (`warm_start_delta`), or how well each of the embedding's nearest candidates' stored
models fit the new support set (`fitted_warm_start_delta`, the better one: README, Knowledge base).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import torch

from distmeta.errors import KnowledgeBaseError
from distmeta.knowledge.records import StoreHeader, TaskRecords, split_delta
from distmeta.knowledge.search import ExactIndex
from distmeta.knowledge.store import KnowledgeStore
from distmeta.knowledge.warm_start import (
    DEFAULT_CANDIDATES,
    DEFAULT_TEMPERATURE,
    SupportLoss,
    fit_weights,
    inverse_distance_weights,
)
from distmeta.storage import Location


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

    def __init__(
        self, header: StoreHeader, records: TaskRecords, metric: str = "euclidean", source: str = "", index=None
    ):
        self.header = header
        self.records = records
        self.index = index if index is not None else ExactIndex(records.embedding, metric)
        """Anything with `ExactIndex.search`: the exact index in this process, or a `ServedIndex`
        (distmeta.runtime.knowledge) answering from a Ray actor."""
        self.metric = metric
        self.source = source
        self.usable = records.adapted_delta.isfinite().all(dim=1) if len(records) else torch.zeros(0, dtype=torch.bool)
        """Rows whose stored delta is finite: a stored adaptation that diverged never enters a warm start."""

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
        return [self._similar(int(row), float(distance)) for row, distance in zip(found.indices[0], found.distances[0])]

    def _similar(self, row: int, distance: float) -> SimilarTask:
        metrics = {name: float(value[row]) for name, value in self.records.metrics.items()}
        return SimilarTask(
            distance,
            self.records.task_index[row],
            self.records.task_seed[row],
            self.records.split[row],
            self.records.family[row],
            **metrics,
        )

    def warm_start_delta(self, embedding: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
        """The inverse-distance-weighted mean delta of the `k` nearest stored tasks, by parameter name."""
        self._check_deltas()
        found = self.index.search(embedding, k + int((~self.usable).sum()))
        keep = self.usable[found.indices[0]]
        rows, distances = found.indices[0][keep][:k], found.distances[0][keep][:k]
        if len(rows) == 0:
            raise KnowledgeBaseError(self.source, "every stored adaptation diverged: nothing to warm-start from")
        return self._weighted_delta(rows, inverse_distance_weights(distances))

    def fitted_warm_start_delta(
        self,
        embedding: torch.Tensor,
        support_loss: SupportLoss,
        k: int,
        candidates: int = DEFAULT_CANDIDATES,
        temperature: float = DEFAULT_TEMPERATURE,
        names: Collection[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The mean delta of the `k` of the `candidates` nearest stored tasks whose stored models fit
        the new support set best (`support_loss`), weighted by softmax(-loss / temperature).
        `names`: only these stored parameters (default: all), in the scoring and in the result;
        the others stay at the meta-parameters (`warm_start.label_free_names`)."""
        self._check_deltas()
        rows = self.index.search(embedding, max(candidates, k)).indices[0]
        losses = torch.tensor(
            [support_loss(self.stored_delta(row, names)) for row in rows.tolist()], dtype=torch.float64
        )
        return self.fitted_delta(rows, losses, k, temperature, names)

    def stored_delta(self, row: int, names: Collection[str] | None = None) -> dict[str, torch.Tensor]:
        """Stored row `row`'s delta by parameter name (only `names`, when given), float32."""
        delta = split_delta(self.header, self.records.adapted_delta[row])
        return delta if names is None else {name: value for name, value in delta.items() if name in names}

    def best_fit(
        self, embedding: torch.Tensor, support_loss: SupportLoss, candidates: int = DEFAULT_CANDIDATES
    ) -> tuple[SimilarTask, float]:
        """The stored task whose stored model fits the new support set best among the embedding's
        `candidates` nearest, and that loss: a loss, unlike an embedding distance, compares across
        learners."""
        found = self.index.search(embedding, candidates)
        rows = found.indices[0]
        losses = torch.tensor(
            [support_loss(split_delta(self.header, self.records.adapted_delta[row])) for row in rows.tolist()],
            dtype=torch.float64,
        )
        losses = torch.where(self.usable[rows], losses, torch.tensor(math.inf, dtype=torch.float64))
        best = int(torch.nan_to_num(losses, nan=math.inf, posinf=math.inf).argmin())
        return self._similar(int(rows[best]), float(found.distances[0][best])), float(losses[best])

    def fitted_delta(
        self,
        rows: torch.Tensor,
        losses: torch.Tensor,
        k: int,
        temperature: float = DEFAULT_TEMPERATURE,
        names: Collection[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The mean delta of the `k` of stored `rows` with the lowest support `losses`, weighted by
        softmax(-loss / temperature); a non-finite loss (a diverged stored model) never counts."""
        losses = torch.where(self.usable[rows], losses.double(), torch.tensor(math.inf, dtype=torch.float64))
        if not bool(losses.isfinite().any()):
            raise KnowledgeBaseError(
                self.source,
                f"none of the {len(rows)} nearest stored tasks' models gives a "
                f"finite loss on this support set: nothing to warm-start from",
            )
        best = torch.topk(torch.nan_to_num(losses, nan=math.inf, posinf=math.inf), min(k, len(rows)), largest=False)
        finite = best.values.isfinite()  # fewer than k finite: the others would add 0 * NaN
        return self._weighted_delta(rows[best.indices[finite]], fit_weights(best.values[finite], temperature), names)

    def _check_deltas(self) -> None:
        if self.header.delta_size == 0:
            raise KnowledgeBaseError(
                self.source,
                "its records keep no adapted parameters (an algorithm "
                "without an inner loop, such as protonet): nothing to "
                "warm-start from",
            )

    def _weighted_delta(
        self, rows: torch.Tensor, weights: torch.Tensor, names: Collection[str] | None = None
    ) -> dict[str, torch.Tensor]:
        deltas = self.records.adapted_delta[rows].double()
        delta = split_delta(self.header, (weights.unsqueeze(1) * deltas).sum(dim=0))
        return delta if names is None else {name: value for name, value in delta.items() if name in names}
