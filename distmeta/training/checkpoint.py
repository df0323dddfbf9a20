"""Checkpoints: everything needed to resume a run or to use its meta-parameters.

A checkpoint is one file `step_NNNNNNNN.pt` under `<run_dir>/checkpoints/`,
written atomically (a temporary file renamed, or one upload to a bucket: see
`distmeta.storage`), so that a crash or a full disk mid-write never leaves a file
that looks like a checkpoint, and the one before stays whole. The run folder may be
a local path or a bucket URI (`s3://...`). Tasks are sampled from (seed, split, step, task index) alone, so the
step is all the sampler state there is. Every tensor in it is on
the CPU (meta-parameters and optimiser state alike), so a checkpoint written on
a GPU loads on a machine without one.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from distmeta.config import NOT_HASHED, Config, config_hash, from_dict, to_dict
from distmeta.errors import CheckpointError, ConfigError, StorageError
from distmeta.storage import Location, as_path, location

FORMAT_VERSION = 1
CHECKPOINT_NAME = re.compile(r"^step_(\d{8})\.pt$")


def checkpoint_dir(run_dir: str | Path | Location) -> Location:
    return location(run_dir) / "checkpoints"


def save_checkpoint(
    run_dir: str | Path | Location,
    step: int,
    config: Config,
    meta_params: dict,
    optimizer_state: dict,
    metrics: dict,
    extra: dict | None = None,
) -> Path | Location:
    """Write the checkpoint of `step` atomically and return its path; `extra` holds what else a
    kind of run must resume from (a learned optimiser's persistent unrolls), its tensors moved to the CPU."""
    payload = {
        "format_version": FORMAT_VERSION,
        "step": step,
        "config": to_dict(config),
        "config_hash": config_hash(config),
        "meta_parameters": {name: value.detach().cpu() for name, value in meta_params.items()},
        "optimizer": on_cpu(optimizer_state),
        "metrics": metrics,
        **on_cpu(extra or {}),
    }
    target = checkpoint_dir(run_dir) / f"step_{step:08d}.pt"
    try:
        target.write_with(lambda file: torch.save(payload, file))
    except OSError as error:  # storage full, read-only or gone: the earlier checkpoints are untouched
        raise StorageError(
            target,
            f"the checkpoint of step {step} could not be written ({error}); the "
            f"checkpoints before it are intact: the same command resumes from the "
            f"newest once it can write",
        ) from None
    return as_path(target)


def on_cpu(value: Any) -> Any:
    """`value` with every tensor in it (nested in dicts, lists, tuples) copied to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: on_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(on_cpu(item) for item in value)
    return value


def checkpoint_files(run_dir: str | Path | Location) -> list[Path | Location]:
    """The checkpoints of `run_dir`, lowest step first: in `checkpoints/` for a
    single-process run, in Ray Train's `checkpoint_*/` folders for a distributed one."""
    run_dir = location(run_dir)
    files = [
        p
        for p in [*run_dir.glob("checkpoints/step_*.pt"), *run_dir.glob("checkpoint_*/checkpoints/step_*.pt")]
        if CHECKPOINT_NAME.match(p.name)
    ]
    return [as_path(path) for path in sorted(files, key=lambda path: path.name)]


def checkpoint_step(path: Path | Location) -> int:
    """The step a checkpoint file is of, from its name (`step_NNNNNNNN.pt`), without reading it."""
    match = CHECKPOINT_NAME.match(path.name)
    if match is None:
        raise ValueError(f"{path} is not named as a checkpoint (step_NNNNNNNN.pt)")
    return int(match.group(1))


def latest_checkpoint(run_dir: str | Path | Location) -> Path | Location | None:
    """The checkpoint of the highest step in `run_dir`, or None."""
    files = checkpoint_files(run_dir)
    return files[-1] if files else None


def newest_readable_checkpoint(run_dir: str | Path | Location) -> dict | None:
    """The payload of the highest-step checkpoint of `run_dir` that loads cleanly, if any.

    A newer one that does not load (cut short: by a crash before atomic writes, a full
    disk, a copy to the storage that failed) is skipped with a warning naming it, and the
    run resumes from the one before: at most the steps between the two are lost.
    """
    for path in reversed(checkpoint_files(run_dir)):
        try:
            return load_checkpoint(path)
        except CheckpointError as error:
            warnings.warn(
                f"skipping {error}; resuming from the checkpoint before it", CheckpointSkippedWarning, stacklevel=2
            )
    return None


class CheckpointSkippedWarning(UserWarning):
    """A checkpoint that does not load was passed over for the one before it."""


def resolve_checkpoint(path: str | Path | Location) -> Location:
    """A checkpoint file from a file path or a run directory (its latest checkpoint)."""
    path = location(path)
    if path.is_file():
        return path
    if path.is_dir():
        latest = latest_checkpoint(path)
        if latest is None:
            raise CheckpointError(
                path,
                "is a directory without checkpoints (expected checkpoints/step_*.pt or "
                "checkpoint_*/checkpoints/step_*.pt)",
            )
        return location(latest)
    raise CheckpointError(path, "does not exist")


def load_checkpoint(path: str | Path | Location) -> dict[str, Any]:
    """The payload of a checkpoint file (or of a run directory's latest one), checked."""
    path = resolve_checkpoint(path)
    try:
        payload = torch.load(_readable(path), map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for a damaged file
        raise CheckpointError(path, f"cannot be read as a checkpoint ({error})") from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(path, f"is not a distmeta checkpoint of format {FORMAT_VERSION}")
    payload["path"] = str(path)
    return payload


def _readable(path: Location) -> Path | io.BytesIO:
    """What torch.load reads: the file itself, or a bucket's object in memory."""
    return path.local_path if path.is_local else io.BytesIO(path.read_bytes())


def checkpoint_config(payload: dict) -> Config:
    return from_dict(payload["config"])


def config_differences(old: Config, new: Config) -> list[str]:
    """Dotted names of the fields that differ and change what is learned (see config_hash)."""
    differences: list[str] = []
    _diff(to_dict(old), to_dict(new), "", differences)
    return [name for name in differences if name not in NOT_HASHED and not name.startswith("eval.")]


def check_resumable(payload: dict, config: Config) -> None:
    """Refuse to resume a run whose config changed, naming the fields that differ."""
    _check_schedule_length(payload, config)
    if payload["config_hash"] == config_hash(config):
        return
    fields = config_differences(checkpoint_config(payload), config)
    raise ConfigError(
        ", ".join(fields) or "config",
        f"differs from the run being resumed ({payload['path']}); use a new run directory or restore the old values",
    )


def _check_schedule_length(payload: dict, config: Config) -> None:
    """A run may resume with more `train.steps` (not hashed), except under the cosine schedule,
    which anneals over them: the resumed run's rate would jump back from near 0 to where the
    longer schedule is, and never end where an uninterrupted run ends."""
    started_with = payload["config"]["train"]["steps"]
    if config.train.meta_lr_schedule != "cosine" or started_with == config.train.steps:
        return
    raise ConfigError(
        "train.steps",
        f"the cosine meta_lr_schedule anneals over train.steps, and the run being resumed "
        f"({payload['path']}) was started with {started_with}: resume with {started_with}, or start a new run",
    )


def _diff(old: Any, new: Any, prefix: str, out: list[str]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            _diff(old.get(key), new.get(key), f"{prefix}{key}.", out)
        return
    if old != new:
        out.append(prefix.rstrip("."))
