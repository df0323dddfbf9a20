"""Filling the knowledge base: adapt to tasks, embed them, and keep what adaptation learned.

Task `i` of a build is task_seed(run seed, split, BUILD_STREAM, i): a stream of its own, apart
from training steps and from `distmeta eval` (step 0), so that evaluation tasks are never in
the store. A build can be shared among writers by task index (`shard`): each computes its own
rows, and the union is the same records one writer makes (tasks are seeded by index alone).
Pure torch: no Ray, no application config.
"""

from __future__ import annotations

from typing import Callable

import torch

from distmeta.algorithms.base import MetaAlgorithm, Params
from distmeta.knowledge.embeddings import EmbeddingSpec, task_embedding
from distmeta.knowledge.records import METRIC_COLUMNS, StoreHeader, TaskRecords
from distmeta.tasks import TaskDistribution, task_seed

BUILD_STREAM = 1 << 40
"""The 'step' in the seeds of built tasks: far from any training step."""


def shard(num_tasks: int, rank: int, world: int) -> range:
    """The task indices writer `rank` of `world` builds: every world-th from rank."""
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, {world}), got {rank}")
    return range(rank, num_tasks, world)


def adapted_layout(algorithm: MetaAlgorithm, meta_params: Params) -> tuple[tuple[str, ...], tuple[tuple[int, ...], ...]]:
    """Names and shapes of what a warm start can start from: the adapted model parameters
    (all of them for the MAML family, the head for ANIL; none for ProtoNets' prototypes)."""
    model = algorithm.model_parameters(meta_params)
    names = tuple(name for name in algorithm.adapted_names(model) if name in model)
    if algorithm.name == "protonet":
        names = ()
    return names, tuple(tuple(model[name].shape) for name in names)


def build_records(algorithm: MetaAlgorithm, meta_params: Params, distribution: TaskDistribution, *,
                  run_seed: int, split: str, indices: range, inner_steps: int, spec: EmbeddingSpec,
                  family_of: Callable[[int], str | None] | None = None) -> TaskRecords:
    """Adapt to tasks `indices` of the build stream of `split`; one row each."""
    names, _ = adapted_layout(algorithm, meta_params)
    device = next(iter(meta_params.values())).device
    family_of = family_of or getattr(distribution, "task_family", None)
    rows: dict[str, list] = {"index": [], "seed": [], "family": [], "embedding": [], "delta": []}
    metrics: dict[str, list] = {name: [] for name in METRIC_COLUMNS}
    for index in indices:
        seed = task_seed(run_seed, split, BUILD_STREAM, index)
        support_x, support_y, query_x, query_y = distribution.sample(1, seed).to(device).tensors()
        support_x, support_y, query_x, query_y = support_x[0], support_y[0], query_x[0], query_y[0]
        rows["index"].append(index)
        rows["seed"].append(seed)
        rows["family"].append(family_of(seed) if family_of else None)
        rows["embedding"].append(task_embedding(spec, algorithm, meta_params, support_x, support_y))
        adapted = algorithm.adapt(meta_params, support_x, support_y, inner_steps, differentiable=False)
        rows["delta"].append(flat_delta(meta_params, adapted, names))
        with torch.no_grad():
            for when, state in (("before", algorithm.adapt(meta_params, support_x, support_y, 0, False)),
                                ("after", adapted)):
                outputs = algorithm.predict(meta_params, state, query_x)
                metrics[f"loss_{when}"].append(float(algorithm.loss(outputs, query_y)))
                metrics[f"score_{when}"].append(float(algorithm.score(outputs, query_y)))
    return TaskRecords(
        task_index=rows["index"], task_seed=rows["seed"], split=[split] * len(rows["index"]),
        family=rows["family"],
        embedding=torch.stack(rows["embedding"]) if rows["embedding"] else torch.zeros(0, spec.size),
        adapted_delta=torch.stack(rows["delta"]) if rows["delta"] else torch.zeros(0, 0, dtype=torch.float16),
        metrics={name: torch.tensor(values, dtype=torch.float64) for name, values in metrics.items()},
    )


def flat_delta(meta_params: Params, adapted: Params, names: tuple[str, ...]) -> torch.Tensor:
    """The adapted parameters less their starting meta-parameters, flat, float16, on the CPU."""
    if not names:
        return torch.zeros(0, dtype=torch.float16)
    pieces = [(adapted[name] - meta_params[name]).detach().reshape(-1) for name in names]
    return torch.cat(pieces).cpu().to(torch.float16)


def build_header(algorithm: MetaAlgorithm, meta_params: Params, *, run: str, config_hash: str, step: int,
                 spec: EmbeddingSpec, inner_steps: int, writer: str = "") -> StoreHeader:
    names, shapes = adapted_layout(algorithm, meta_params)
    return StoreHeader(run=run, config_hash=config_hash, step=step, embedding_kind=spec.kind,
                       embedding_size=spec.size, projection_seed=spec.projection_seed, inner_steps=inner_steps,
                       adapted_names=names, adapted_shapes=shapes, writer=writer)
