"""Tiny learners and stores shared by the knowledge-base tests."""

from __future__ import annotations

from pathlib import Path

from distmeta.config import config_hash, load_config
from distmeta.experiment import build_experiment
from distmeta.knowledge import EmbeddingSpec, KnowledgeStore, build_header, build_records, shard
from distmeta.training.checkpoint import save_checkpoint

STORE_STEPS = 20
SINUSOID = ["model.hidden_sizes=[16,16]", "algorithm.test_inner_steps=3", "task.shots=5"]


def sinusoid_run(run_dir: Path, overrides: list[str] = (), step: int = 0):
    """A run folder holding a checkpoint of untrained sinusoid meta-parameters; (config, experiment, params)."""
    config = load_config(None, [*SINUSOID, *overrides, f"train.run_dir={run_dir}"])
    experiment = build_experiment(config, check_data=False)
    params = experiment.initial_meta_parameters()
    save_checkpoint(run_dir, step, config, params, {}, {})
    return config, experiment, params


def fill(
    run_dir: Path,
    config,
    experiment,
    params,
    tasks: int,
    *,
    step: int = 0,
    rank: int = 0,
    world: int = 1,
    spec: EmbeddingSpec | None = None,
    split: str = "train",
) -> Path:
    """Build records of tasks 0..tasks-1 (this writer's shard) and append them as one file."""
    spec = spec or EmbeddingSpec(projection_seed=config.seed)
    steps = config.algorithm.test_inner_steps
    records = build_records(
        experiment.algorithm,
        params,
        experiment.tasks(split),
        run_seed=config.seed,
        split=split,
        indices=shard(tasks, rank, world),
        inner_steps=steps,
        store_steps=STORE_STEPS,
        spec=spec,
    )
    header = build_header(
        experiment.algorithm,
        params,
        run=run_dir.name,
        config_hash=config_hash(config),
        step=step,
        spec=spec,
        inner_steps=steps,
        store_steps=STORE_STEPS,
        writer=f"test-{rank}",
    )
    return KnowledgeStore(run_dir).append(header, records)
