"""Exact k-nearest-neighbour search over stored task embeddings, with matrix products.

Cosine distance (1 - cosine similarity) or Euclidean distance, for a batch of queries at
once: one (queries x stored) matrix product and a top-k. At the sizes measured in
benchmarks/knowledge_base.py (up to 10^5 stored tasks of 64 entries) this answers in
milliseconds on a CPU, and it is exact, so it is the reference any faster index is held to.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

METRICS = ("cosine", "euclidean")


@dataclass(frozen=True)
class Neighbours:
    """For each query (row), the k nearest stored rows, nearest first."""

    distances: torch.Tensor
    """(queries, k), float32."""
    indices: torch.Tensor
    """(queries, k), int64: rows of the index's embeddings."""


class ExactIndex:
    """All stored embeddings in one matrix; `search` compares queries with every row."""

    def __init__(self, embeddings: torch.Tensor, metric: str = "cosine"):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if embeddings.ndim != 2 or len(embeddings) == 0:
            raise ValueError(f"embeddings must be a non-empty (rows, size) matrix, got shape {tuple(embeddings.shape)}")
        self.metric = metric
        self.embeddings = embeddings.float().contiguous()
        if metric == "cosine":
            self._rows = unit_rows(self.embeddings)
        else:
            self._rows = self.embeddings
            self._square_norms = self.embeddings.square().sum(dim=1)

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def nbytes(self) -> int:
        """Memory the index's matrices take."""
        extra = self._square_norms.nbytes if self.metric == "euclidean" else self._rows.nbytes
        return self.embeddings.nbytes + extra

    def search(self, queries: torch.Tensor, k: int) -> Neighbours:
        """The `k` nearest rows of each query ((queries, size) or one (size,) query, as a batch of 1)."""
        queries = queries.float().reshape(-1, self.embeddings.shape[1])
        k = min(k, len(self))
        if k < 1:
            raise ValueError(f"k must be positive, got {k}")
        distances = self.distances(queries)
        nearest = torch.topk(distances, k, dim=1, largest=False, sorted=True)
        return Neighbours(nearest.values, nearest.indices)

    def distances(self, queries: torch.Tensor) -> torch.Tensor:
        """(queries, rows) distances to every stored row."""
        if self.metric == "cosine":
            return 1.0 - unit_rows(queries) @ self._rows.T
        # |q - e|^2 expanded into one matrix product; rounding can make it slightly negative
        squared = queries.square().sum(dim=1, keepdim=True) - 2 * queries @ self._rows.T + self._square_norms
        return squared.clamp(min=0).sqrt()


def unit_rows(matrix: torch.Tensor) -> torch.Tensor:
    return matrix / matrix.norm(dim=1, keepdim=True).clamp(min=1e-12)
