"""Task distributions: each samples stacked support/query tensors from a seed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from distmeta.tasks.base import SPLITS, TaskDistribution, meta_batch_seed, sample_tasks, task_seed
from distmeta.tasks.batch import TaskBatch
from distmeta.tasks.sinusoid import SinusoidTasks

if TYPE_CHECKING:  # the engine reads the config by attribute; it does not import it at run time
    from distmeta.config import Config

__all__ = [
    "SPLITS",
    "TaskBatch",
    "TaskDistribution",
    "build_task_distribution",
    "meta_batch_seed",
    "sample_tasks",
    "task_seed",
]


def build_task_distribution(config: Config, split: str) -> TaskDistribution:
    """The tasks of `split` (train, val or test); bad data raises here, not mid-training."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    task = config.task
    if task.name == "sinusoid":
        return SinusoidTasks(task.shots, task.query_shots)
    if task.name == "multimodal":
        from distmeta.tasks.multimodal import MultimodalTasks

        return MultimodalTasks(task.shots, task.query_shots, task.modes, task.noise_std)
    ways = task.ways_of(split)
    if task.omniglot.synthetic:
        from distmeta.tasks.synthetic_omniglot import SyntheticOmniglotTasks

        return SyntheticOmniglotTasks(ways, task.shots, task.query_shots, task.omniglot.image_size)
    from distmeta.tasks.omniglot import OmniglotTasks  # pyarrow and Pillow only when needed

    ways_field = "task.train_ways" if ways != task.ways else "task.ways"
    return OmniglotTasks(task.omniglot, split, ways, task.shots, task.query_shots, ways_field)
