"""A learned-optimiser config: checked at the edge, and turned into the pure-torch pieces it describes.

The checks of the meta-training settings are `MetaTrainingSettings.check`'s own (one place);
their errors are re-raised here under the config's dotted names (`optimizer` is
`algorithm.learned_optimizer.rule`, `unrolls` is `train.meta_batch_size`, ...).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from distmeta.config import (
    LEARNED_OPTIMIZER,
    OPTIMISEE_ONLY_TASKS,
    OPTIMISEE_TASKS,
    AlgorithmConfig,
    Config,
    LearnedOptimizerConfig,
    OmniglotMLPConfig,
    SinusoidMLPConfig,
    TrainConfig,
)
from distmeta.errors import ConfigError
from distmeta.learned_optimizers.meta_training import MetaTrainingSettings
from distmeta.tasks.digits import DigitsMLPFamily
from distmeta.tasks.omniglot_mlp import OmniglotMLPFamily
from distmeta.tasks.optimisee import OptimiseeFamily
from distmeta.tasks.quadratic import ENTRIES, QuadraticFamily
from distmeta.tasks.sinusoid_mlp import SinusoidMLPFamily

SECTION = "algorithm.learned_optimizer"
CONFIG_FIELD = {
    "optimizer": f"{SECTION}.rule",
    "unrolls": "train.meta_batch_size",
    "meta_steps": "train.steps",
    "meta_lr": "train.meta_lr",
    "seed": "seed",
}
"""The config's name of each `MetaTrainingSettings` field not named `<SECTION>.<field>`."""
OMNIGLOT_DRAWINGS = 20
"""Drawings of each character in Omniglot (by 20 people)."""
FEW_SHOT_FIELDS = ("inner_lr", "inner_steps", "test_inner_steps", "first_order", "inner_batch_size")
FEW_SHOT_TRAIN_FIELDS = ("vectorize", "compile", "prefetch", "vmap_chunk_size")
"""How few-shot inner loops run (vmap or loop, compiled, tasks drawn ahead): a learned optimiser's
unrolls run as its estimator runs them, so a value set here would be silently ignored."""
"""Fields of the algorithm section that only the few-shot algorithms read."""


def _refuse_unread(section: Any, defaults: Any, prefix: str, fields: tuple[str, ...], why: str) -> None:
    """Refuse, naming it, the first of `fields` of `section` set away from its default."""
    for field in fields:
        default = getattr(defaults, field)
        if getattr(section, field) != default:
            raise ConfigError(f"{prefix}.{field}", f"{why} (leave {field} at {default!r})")


def check_learned_optimizer_config(config: Config) -> None:
    """Raise ConfigError naming the field for a learned-optimiser section that cannot run, or
    a pairing of algorithm and task that does not fit (optimisee tasks take a learned optimiser,
    a learned optimiser takes optimisee tasks)."""
    name, task = config.algorithm.name, config.task.name
    _check_mlp_sections_are_read(config)
    if not config.learns_update_rule:
        if task in OPTIMISEE_ONLY_TASKS:
            raise ConfigError(
                "algorithm.name", f"{task} tasks are optimisees: they meta-train {LEARNED_OPTIMIZER}, not {name}"
            )
        if config.algorithm.learned_optimizer != LearnedOptimizerConfig():
            raise ConfigError(SECTION, f"only {LEARNED_OPTIMIZER} reads it; {name} does not (remove the section)")
        return
    if task not in OPTIMISEE_TASKS:
        raise ConfigError(
            "task.name", f"{LEARNED_OPTIMIZER} trains on optimisee tasks ({', '.join(OPTIMISEE_TASKS)}), not {task}"
        )
    _refuse_unread(
        config.algorithm,
        AlgorithmConfig(),
        "algorithm",
        FEW_SHOT_FIELDS,
        f"{LEARNED_OPTIMIZER} has no few-shot inner loop to set; its settings are under {SECTION}",
    )
    if config.train.device == "cuda":
        raise ConfigError(
            "train.device",
            "a learned optimiser is meta-trained on the CPU (its optimisee tasks "
            "are small CPU tensors); use cpu or auto",
        )
    _refuse_unread(
        config.train,
        TrainConfig(),
        "train",
        FEW_SHOT_TRAIN_FIELDS,
        f"sets how few-shot inner loops run; {LEARNED_OPTIMIZER} does not read it (its estimator runs the unrolls)",
    )
    _check_section(config.algorithm.learned_optimizer)
    _check_family(config)
    try:
        meta_training_settings(config).check()
    except ConfigError as error:
        raise ConfigError(
            CONFIG_FIELD.get(error.field, f"{SECTION}.{error.field}"), str(error).split(": ", 1)[1]
        ) from None


def _check_section(section: LearnedOptimizerConfig) -> None:
    """The fields `MetaTrainingSettings` does not hold: evaluation's."""
    for field in ("eval_tasks", "tuning_tasks"):
        if getattr(section, field) < 1:
            raise ConfigError(f"{SECTION}.{field}", f"must be at least 1, got {getattr(section, field)}")
    if section.eval_steps < 0:
        raise ConfigError(f"{SECTION}.eval_steps", f"must be 0 (10 x unroll_length) or more, got {section.eval_steps}")
    for field in ("sigma", "loss_clip", "gradient_clip"):
        if not math.isfinite(getattr(section, field)):
            raise ConfigError(f"{SECTION}.{field}", f"must be finite, got {getattr(section, field)}")


def _check_mlp_sections_are_read(config: Config) -> None:
    """task.sinusoid_mlp and task.omniglot_mlp set where nothing reads them: a few-shot sinusoid or
    omniglot run (its model is `model`'s), or another optimisee family."""
    sections = {"sinusoid": ("sinusoid_mlp", SinusoidMLPConfig()), "omniglot": ("omniglot_mlp", OmniglotMLPConfig())}
    for task, (section, defaults) in sections.items():
        if getattr(config.task, section) == defaults:
            continue
        if config.task.name != task or not config.learns_update_rule:
            raise ConfigError(
                f"task.{section}",
                f"only the {task} optimisee ({LEARNED_OPTIMIZER} on task.name {task}) reads it; "
                f"{config.algorithm.name} on {config.task.name} does not (remove the section)",
            )


def _check_family(config: Config) -> None:
    quadratic, digits = config.task.quadratic, config.task.digits
    for field in ("dimensions", "functions"):
        if getattr(quadratic, field) < 1:
            raise ConfigError(f"task.quadratic.{field}", f"must be at least 1, got {getattr(quadratic, field)}")
    if not quadratic.init_std >= 0:
        raise ConfigError("task.quadratic.init_std", f"must be 0 or more, got {quadratic.init_std}")
    if quadratic.entries not in ENTRIES:
        raise ConfigError(
            "task.quadratic.entries", f"unknown value {quadratic.entries!r} (choose from {', '.join(ENTRIES)})"
        )
    for field in ("hidden", "batch_size"):
        if getattr(digits, field) < 1:
            raise ConfigError(f"task.digits.{field}", f"must be at least 1, got {getattr(digits, field)}")
    sinusoid, omniglot = config.task.sinusoid_mlp, config.task.omniglot_mlp
    if not sinusoid.hidden_sizes:
        raise ConfigError("task.sinusoid_mlp.hidden_sizes", "give at least one hidden layer width")
    for index, width in enumerate(sinusoid.hidden_sizes):
        if width < 1:
            raise ConfigError(f"task.sinusoid_mlp.hidden_sizes[{index}]", f"must be at least 1, got {width}")
    for field in ("batch_size", "points", "eval_points"):
        if getattr(sinusoid, field) < 1:
            raise ConfigError(f"task.sinusoid_mlp.{field}", f"must be at least 1, got {getattr(sinusoid, field)}")
    for field in ("hidden", "drawings", "batch_size"):
        if getattr(omniglot, field) < 1:
            raise ConfigError(f"task.omniglot_mlp.{field}", f"must be at least 1, got {getattr(omniglot, field)}")
    if omniglot.drawings > OMNIGLOT_DRAWINGS and not config.task.omniglot.synthetic:
        raise ConfigError(
            "task.omniglot_mlp.drawings",
            f"Omniglot has {OMNIGLOT_DRAWINGS} drawings of each character, got {omniglot.drawings}",
        )


def meta_training_settings(config: Config):
    """The `MetaTrainingSettings` the config describes (the pure-torch meta-trainer's)."""
    section = config.algorithm.learned_optimizer
    shared = {field.name for field in dataclasses.fields(MetaTrainingSettings)} & set(dataclasses.asdict(section))
    return MetaTrainingSettings(
        optimizer=section.rule,
        unrolls=config.train.meta_batch_size,
        meta_steps=config.train.steps,
        meta_lr=config.train.meta_lr,
        seed=config.seed,
        **{field: getattr(section, field) for field in shared},
    )


def optimisee_family(config: Config, split: str, width: int = 1) -> OptimiseeFamily:
    """The optimisee family of `task.name` on `split` ("train" or "test"); `width` multiplies
    an MLP's hidden units (the wider held-out variant)."""
    task = config.task
    if task.name == "quadratic":
        q = task.quadratic
        return QuadraticFamily(split, q.dimensions, q.functions, q.init_std, q.entries)
    if task.name == "digits":
        return DigitsMLPFamily(split, task.digits.hidden * width, task.digits.batch_size)
    if task.name == "sinusoid":
        s = task.sinusoid_mlp
        hidden_sizes = tuple(size * width for size in s.hidden_sizes)
        return SinusoidMLPFamily(split, hidden_sizes, s.batch_size, s.points, s.eval_points)
    return omniglot_family(config, split, width)


def omniglot_family(config: Config, split: str, width: int = 1) -> OptimiseeFamily:
    """The Omniglot MLP optimisee: tasks of the split's alphabets (the few-shot family's, with
    `drawings` support drawings per class and no query set), or of synthetic Omniglot."""
    task, section = config.task, config.task.omniglot_mlp
    if task.omniglot.synthetic:
        from distmeta.tasks.synthetic_omniglot import SyntheticOmniglotTasks

        synthetic = SyntheticOmniglotTasks(task.ways, section.drawings, 0, task.omniglot.image_size)
        return OmniglotMLPFamily(synthetic, split, section.hidden * width, section.batch_size)
    from distmeta.tasks.omniglot import OmniglotTasks  # pyarrow and Pillow only when needed

    classes = OmniglotTasks(task.omniglot, split, task.ways, section.drawings, 0)
    return OmniglotMLPFamily(classes, split, section.hidden * width, section.batch_size)


def eval_steps(config: Config) -> int:
    """Optimisee steps of an evaluation: `eval_steps`, or 10 x the unroll meta-training saw."""
    section = config.algorithm.learned_optimizer
    return section.eval_steps or 10 * section.unroll_length
