"""Filling the knowledge base: adapt to tasks, embed them, and keep what adaptation learned.

What is kept of a task is learned from all of its data: the stored adaptation runs
`store_steps` steps on support and query together (a past task's query set is known, and the
warm start of a new task is only as good as its neighbours' fits: on the 5-family regression
stand-in, deltas adapted on the whole task for 100 steps cut the 1-step MSE of warm starts
about twice as much as deltas adapted on the 5 support points for 10 steps). The losses and
scores kept are honest held-out ones: the query set after `inner_steps` steps on the support set.

Task `i` of a build is task_seed(run seed, split, BUILD_STREAM, i): a stream of its own, apart
from training steps and from `distmeta eval` (step 0), so that evaluation tasks are never in
the store. A build can be shared among writers by task index (`shard`): each computes its own
rows, and the union is the same records one writer makes (tasks are seeded by index alone).
Pure torch: no Ray, no application config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from distmeta.algorithms.base import MetaAlgorithm, Params
from distmeta.knowledge.embeddings import EmbeddingSpec, task_embedding
from distmeta.knowledge.records import METRIC_COLUMNS, StoreHeader, TaskRecords
from distmeta.tasks import TaskDistribution, task_seed

BUILD_STREAM = 1 << 40
"""The 'step' in the seeds of built tasks: far from any training step."""
DEFAULT_STORE_STEPS = 100
"""Steps of the stored adaptation (on the whole task) unless told otherwise."""


def shard(num_tasks: int, rank: int, world: int) -> range:
    """The task indices writer `rank` of `world` builds: every world-th from rank."""
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, {world}), got {rank}")
    return range(rank, num_tasks, world)


def adapted_layout(
    algorithm: MetaAlgorithm, meta_params: Params
) -> tuple[tuple[str, ...], tuple[tuple[int, ...], ...]]:
    """Names and shapes of what a warm start can start from: the adapted model parameters
    (all of them for the MAML family, the head for ANIL; none for ProtoNets' prototypes)."""
    model = algorithm.model_parameters(meta_params)
    names = tuple(name for name in algorithm.adapted_names(model) if name in model)
    if algorithm.name == "protonet":
        names = ()
    return names, tuple(tuple(model[name].shape) for name in names)


def build_records(
    algorithm: MetaAlgorithm,
    meta_params: Params,
    distribution: TaskDistribution,
    *,
    run_seed: int,
    split: str,
    indices: range,
    inner_steps: int,
    spec: EmbeddingSpec,
    store_steps: int = DEFAULT_STORE_STEPS,
    family_of: Callable[[int], str | None] | None = None,
) -> TaskRecords:
    """Adapt to tasks `indices` of the build stream of `split`; one row each: its embedding (support set
    alone), the delta of `store_steps` steps on the whole task, query loss and score before and after
    `inner_steps` steps on the support set."""
    device = next(iter(meta_params.values())).device
    family_of = family_of or getattr(distribution, "task_family", None)
    tasks = []
    for index in indices:
        seed = task_seed(run_seed, split, BUILD_STREAM, index)
        support_x, support_y, query_x, query_y = distribution.sample(1, seed).to(device).tensors()
        tasks.append(
            StoredTask(
                index, seed, family_of(seed) if family_of else None, support_x[0], support_y[0], query_x[0], query_y[0]
            )
        )
    return records_of_tasks(
        algorithm, meta_params, tasks, split=split, inner_steps=inner_steps, spec=spec, store_steps=store_steps
    )


@dataclass(frozen=True)
class StoredTask:
    """One task to record: where it came from and its data (no task dimension)."""

    index: int
    seed: int
    family: str | None
    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor


def records_of_tasks(
    algorithm: MetaAlgorithm,
    meta_params: Params,
    tasks: list[StoredTask],
    *,
    split: str,
    inner_steps: int,
    spec: EmbeddingSpec,
    store_steps: int = DEFAULT_STORE_STEPS,
) -> TaskRecords:
    """One row per task: its embedding, its whole-task delta, its query loss and score before and after."""
    names, _ = adapted_layout(algorithm, meta_params)
    embeddings, deltas = [], []
    metrics: dict[str, list] = {name: [] for name in METRIC_COLUMNS}
    for task in tasks:
        support_x, support_y, query_x, query_y = task.support_x, task.support_y, task.query_x, task.query_y
        embeddings.append(task_embedding(spec, algorithm, meta_params, support_x, support_y))
        adapted = algorithm.adapt(meta_params, support_x, support_y, inner_steps, differentiable=False)
        deltas.append(
            whole_task_delta(
                algorithm,
                meta_params,
                names,
                store_steps,
                torch.cat([support_x, query_x]),
                torch.cat([support_y, query_y]),
            )
        )
        with torch.no_grad():
            for when, state in (
                ("before", algorithm.adapt(meta_params, support_x, support_y, 0, False)),
                ("after", adapted),
            ):
                outputs = algorithm.predict(meta_params, state, query_x)
                metrics[f"loss_{when}"].append(float(algorithm.loss(outputs, query_y)))
                metrics[f"score_{when}"].append(float(algorithm.score(outputs, query_y)))
    return TaskRecords(
        task_index=[task.index for task in tasks],
        task_seed=[task.seed for task in tasks],
        split=[split] * len(tasks),
        family=[task.family for task in tasks],
        embedding=torch.stack(embeddings) if embeddings else torch.zeros(0, spec.size),
        adapted_delta=torch.stack(deltas) if deltas else torch.zeros(0, 0, dtype=torch.float16),
        metrics={name: torch.tensor(values, dtype=torch.float64) for name, values in metrics.items()},
    )


def whole_task_delta(
    algorithm: MetaAlgorithm,
    meta_params: Params,
    names: tuple[str, ...],
    steps: int,
    task_x: torch.Tensor,
    task_y: torch.Tensor,
) -> torch.Tensor:
    if not names:
        return torch.zeros(0, dtype=torch.float16)
    return flat_delta(meta_params, algorithm.adapt(meta_params, task_x, task_y, steps, differentiable=False), names)


def flat_delta(meta_params: Params, adapted: Params, names: tuple[str, ...]) -> torch.Tensor:
    """The adapted parameters less their starting meta-parameters, flat, float16, on the CPU."""
    if not names:
        return torch.zeros(0, dtype=torch.float16)
    pieces = [(adapted[name] - meta_params[name]).detach().reshape(-1) for name in names]
    return torch.cat(pieces).cpu().to(torch.float16)


def build_header(
    algorithm: MetaAlgorithm,
    meta_params: Params,
    *,
    run: str,
    config_hash: str,
    step: int,
    spec: EmbeddingSpec,
    inner_steps: int,
    store_steps: int = DEFAULT_STORE_STEPS,
    writer: str = "",
) -> StoreHeader:
    names, shapes = adapted_layout(algorithm, meta_params)
    return StoreHeader(
        run=run,
        config_hash=config_hash,
        step=step,
        embedding_kind=spec.kind,
        embedding_size=spec.size,
        projection_seed=spec.projection_seed,
        inner_steps=inner_steps,
        store_steps=store_steps,
        adapted_names=names,
        adapted_shapes=shapes,
        writer=writer,
    )
