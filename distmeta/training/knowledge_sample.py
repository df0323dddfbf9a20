"""Filling the knowledge base during meta-training: a sample of every `train.knowledge_every`-th step's tasks.

The sample is the meta-batch's first `train.knowledge_tasks` tasks, by their index in the whole
meta-batch: each worker records those that fall in its share, so N workers record the same tasks
one process does. Each writes its rows as its own file of the run's store: the records are
gathered (as files), never reduced. Rows are computed after the step's update, with the
meta-parameters of the new step, which is the step their header carries: a learner at step S
searches the records of step S (`distmeta.knowledge.store`). A task's seed in the store is its
meta-batch's seed, its index its place in the meta-batch: together they name it.
"""

from __future__ import annotations

from pathlib import Path

from distmeta.config import config_hash
from distmeta.experiment import Experiment
from distmeta.knowledge import EmbeddingSpec, KnowledgeStore, build_header
from distmeta.knowledge.build import StoredTask, records_of_tasks
from distmeta.storage import Location
from distmeta.tasks import TaskBatch


def sampled_indices(experiment: Experiment, step: int, indices: range) -> list[int]:
    """The meta-batch indices of `indices` (a worker's share) to record after update `step` (none
    unless `step` is a multiple of train.knowledge_every)."""
    train = experiment.config.train
    if not train.knowledge_every or step % train.knowledge_every:
        return []
    return [index for index in indices if index < train.knowledge_tasks]


def record_step_sample(
    experiment: Experiment,
    meta_params,
    step: int,
    batch: TaskBatch,
    indices: range,
    run_dir: Path | Location,
    writer: str,
) -> Path | Location | None:
    """Append the sampled tasks of `batch` (meta-batch tasks `indices`) to the run's store as one
    file, computed with `meta_params` of `step`; its path, or None when this step samples none here."""
    chosen = sampled_indices(experiment, step, indices)
    if not chosen:
        return None
    config, algorithm = experiment.config, experiment.algorithm
    distribution = experiment.tasks("train")
    family_of = getattr(distribution, "task_family", None)
    tasks = []
    for index in chosen:
        row = index - indices.start
        tasks.append(
            StoredTask(
                index,
                batch.seed,
                family_of(batch.seed, index) if family_of else None,
                batch.support_x[row],
                batch.support_y[row],
                batch.query_x[row],
                batch.query_y[row],
            )
        )
    spec = EmbeddingSpec(projection_seed=config.seed)
    inner_steps, store_steps = algorithm.test_inner_steps, config.train.knowledge_store_steps
    records = records_of_tasks(
        algorithm, meta_params, tasks, split="train", inner_steps=inner_steps, spec=spec, store_steps=store_steps
    )
    header = build_header(
        algorithm,
        meta_params,
        run=run_dir.name,
        config_hash=config_hash(config),
        step=step,
        spec=spec,
        inner_steps=inner_steps,
        store_steps=store_steps,
        writer=writer,
    )
    return KnowledgeStore(run_dir).append(header, records)
