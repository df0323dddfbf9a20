"""`TaskRecords`: what the knowledge base keeps of each task, as columns; and its file header.

One row per task: where it came from (task index, seed, split, family where the task
distribution names one), its embedding, the compact form of what adaptation learned (the
adapted parameters, fitted to the whole task, less the meta-parameters they started from, in float16: warm starts need
no more precision than that) and its query loss and score before and after adaptation.
What every row of a file shares (run, config hash, meta-parameters' step, the embedding's
kind, size and projection seed, the adapted parameters' names and shapes) is its `StoreHeader`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import torch

METRIC_COLUMNS = ("loss_before", "loss_after", "score_before", "score_after")


@dataclass(frozen=True)
class StoreHeader:
    """What all the records of one file share; kept in the Parquet file's metadata."""

    run: str
    config_hash: str
    step: int
    """The meta-parameters' step the embeddings and adaptations were computed with."""
    embedding_kind: str
    embedding_size: int
    projection_seed: int
    inner_steps: int
    """Support-set steps behind the loss and score after adaptation."""
    store_steps: int = 0
    """Steps on the whole task (support and query) behind the stored adapted parameters."""
    adapted_names: tuple[str, ...] = ()
    adapted_shapes: tuple[tuple[int, ...], ...] = ()
    writer: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> StoreHeader:
        values = json.loads(text)
        values["adapted_names"] = tuple(values["adapted_names"])
        values["adapted_shapes"] = tuple(tuple(shape) for shape in values["adapted_shapes"])
        return StoreHeader(**values)

    @property
    def delta_size(self) -> int:
        return sum(math.prod(shape) for shape in self.adapted_shapes)

    def same_space(self, other: StoreHeader) -> bool:
        """True when embeddings and deltas of the two can sit in one index."""
        keys = (
            "config_hash",
            "step",
            "embedding_kind",
            "embedding_size",
            "projection_seed",
            "adapted_names",
            "adapted_shapes",
        )
        return all(getattr(self, key) == getattr(other, key) for key in keys)


@dataclass
class TaskRecords:
    """Rows of tasks as columns; tensors on the CPU."""

    task_index: list[int]
    task_seed: list[int]
    split: list[str]
    family: list[str | None]
    embedding: torch.Tensor
    """(rows, embedding size), float32."""
    adapted_delta: torch.Tensor
    """(rows, sum of the adapted parameters' sizes), float16; (rows, 0) when none is kept."""
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    """METRIC_COLUMNS, each (rows,) float64."""

    def __len__(self) -> int:
        return len(self.task_index)

    @staticmethod
    def concat(parts: list[TaskRecords]) -> TaskRecords:
        return TaskRecords(
            task_index=[i for part in parts for i in part.task_index],
            task_seed=[s for part in parts for s in part.task_seed],
            split=[s for part in parts for s in part.split],
            family=[f for part in parts for f in part.family],
            embedding=torch.cat([part.embedding for part in parts]),
            adapted_delta=torch.cat([part.adapted_delta for part in parts]),
            metrics={name: torch.cat([part.metrics[name] for part in parts]) for name in METRIC_COLUMNS},
        )

    def select(self, rows: list[int]) -> TaskRecords:
        index = torch.tensor(rows, dtype=torch.long)
        return TaskRecords(
            task_index=[self.task_index[r] for r in rows],
            task_seed=[self.task_seed[r] for r in rows],
            split=[self.split[r] for r in rows],
            family=[self.family[r] for r in rows],
            embedding=self.embedding[index],
            adapted_delta=self.adapted_delta[index],
            metrics={name: value[index] for name, value in self.metrics.items()},
        )

    def sorted_by_task(self) -> TaskRecords:
        """The rows in (split, task index) order: how records from any number of writers compare."""
        order = sorted(range(len(self)), key=lambda r: (self.split[r], self.task_index[r]))
        return self.select(order)


def split_delta(header: StoreHeader, delta: torch.Tensor) -> dict[str, torch.Tensor]:
    """One row's flat delta as named tensors of the header's shapes, float32."""
    values, start = {}, 0
    for name, shape in zip(header.adapted_names, header.adapted_shapes):
        size = math.prod(shape)
        values[name] = delta[start : start + size].float().reshape(shape)
        start += size
    return values
