"""A meta-trained run's feature layers, reused as another algorithm's frozen feature extractor.

LEO (`algorithm.leo.feature_run`) generates a linear head on top of features meta-trained
by distmeta itself, e.g. a ProtoNets run's embedding. The run is named in the config; its
newest checkpoint's `features.*` meta-parameters are read once, when the new run starts, and
then live in the new run's own meta-parameters (and checkpoints), so that the new run no
longer needs the old one: a checkpoint of it loads after the feature run is gone.
"""

from __future__ import annotations

from pathlib import Path

import torch

from distmeta.errors import CheckpointError, ConfigError
from distmeta.training.checkpoint import load_checkpoint

Params = dict[str, torch.Tensor]
FEATURE_PREFIX = "features."


def feature_run_parameters(run: str | Path, field: str) -> Params:
    """The `features.*` meta-parameters of the newest checkpoint of `run` (a run folder or a
    checkpoint file); ConfigError naming `field` when there is none."""
    try:
        payload = load_checkpoint(run)
    except CheckpointError as error:
        raise ConfigError(field, f"names no readable distmeta run: {error}") from None
    found = {name: value for name, value in payload["meta_parameters"].items() if name.startswith(FEATURE_PREFIX)}
    if not found:
        algorithm = payload.get("config", {}).get("algorithm", {}).get("name", "?")
        raise ConfigError(field, f"{payload['path']} ({algorithm}) has no feature layers (features.*) to reuse")
    return found


def with_feature_run(model_params: Params, run: str | Path, field: str) -> Params:
    """`model_params` with its feature layers replaced by those of `run`, which must have the
    same names and shapes (the same model and channels); ConfigError naming `field`."""
    loaded = feature_run_parameters(run, field)
    wanted = {name: value for name, value in model_params.items() if name.startswith(FEATURE_PREFIX)}
    if set(loaded) != set(wanted):
        raise ConfigError(
            field,
            f"the run's feature layers ({', '.join(sorted(loaded))}) are not this model's "
            f"({', '.join(sorted(wanted))}): give model.name as the feature run had it",
        )
    for name, value in wanted.items():
        if loaded[name].shape != value.shape:
            raise ConfigError(
                field,
                f"the run's {name} has shape {tuple(loaded[name].shape)}, this model's "
                f"{tuple(value.shape)}: give model.channels as the feature run had it",
            )
    return {**model_params, **{name: loaded[name].to(value) for name, value in wanted.items()}}
