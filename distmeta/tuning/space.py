"""A search space file: dotted config fields mapped to distributions, checked before any trial.

    algorithm.inner_lr: {loguniform: [1.0e-3, 1.0]}
    algorithm.inner_steps: {choice: [1, 3, 5]}
    train.meta_batch_size: {grid: [16, 32]}

Distributions: `loguniform: [low, high]`, `uniform: [low, high]`, `randint: [low, high]`
(high excluded, as in Ray Tune), `choice: [values]` (sampled), `grid: [values]` (every value,
crossed with the other grid fields). Every key must be a field of the config, and every value
a distribution can give must make a valid config: the bounds and listed values are checked
against the same rules as a config file, so that no trial fails on a value a person mistyped.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from distmeta.config import Config, from_dict, to_dict, validate, yaml_number
from distmeta.errors import ConfigError

RANGES = ("loguniform", "uniform", "randint")
LISTS = ("choice", "grid")


@dataclass(frozen=True)
class Dimension:
    path: str
    """Dotted config field, e.g. algorithm.inner_lr."""
    kind: str
    """loguniform, uniform, randint, choice or grid."""
    values: tuple
    """(low, high) for a range; the values themselves for choice and grid."""

    def extremes(self) -> tuple:
        """The values a trial can get that are most likely to be invalid."""
        if self.kind == "randint":
            return self.values[0], self.values[1] - 1
        return self.values


@dataclass(frozen=True)
class SearchSpace:
    dimensions: tuple[Dimension, ...]
    source: str = "search space"

    @property
    def paths(self) -> list[str]:
        return [dimension.path for dimension in self.dimensions]

    def grid_size(self) -> int:
        """Trials one pass over every grid combination takes (1 without grid fields)."""
        size = 1
        for dimension in self.dimensions:
            if dimension.kind == "grid":
                size *= len(dimension.values)
        return size


def load_space(path: str | Path, base: Config) -> SearchSpace:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "search space file does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(str(path), f"is not valid YAML ({error})") from None
    return parse_space(raw, base, str(path))


def parse_space(raw: Any, base: Config, source: str = "search space") -> SearchSpace:
    """The search space of `raw` (a dict from YAML), every key and value checked against `base`."""
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(
            source,
            "expected a mapping of config fields to distributions, e.g. "
            "algorithm.inner_lr: {loguniform: [1.0e-3, 1.0]}",
        )
    dimensions = tuple(_dimension(str(key), value, base, source) for key, value in raw.items())
    return SearchSpace(dimensions, source)


def with_values(base: Config, values: dict[str, Any]) -> Config:
    """`base` with each dotted field of `values` replaced, checked like a config file."""
    raw = to_dict(base)
    for path, value in values.items():
        *sections, leaf = path.split(".")
        node = raw
        for section in sections:
            node = node[section]
        node[leaf] = value
    config = from_dict(raw)
    validate(config)
    return config


def _dimension(key: str, spec: Any, base: Config, source: str) -> Dimension:
    name = f"{source}: {key}"
    current = _check_field(key, base, name)
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(
            name,
            f"expected one distribution, e.g. {{loguniform: [1.0e-3, 1.0]}} or {{choice: [1, 3, 5]}}; got {spec!r}",
        )
    ((kind, values),) = spec.items()
    if kind not in RANGES + LISTS:
        raise ConfigError(name, f"unknown distribution {kind!r}; expected one of {', '.join(RANGES + LISTS)}")
    if not isinstance(values, list) or not values:
        raise ConfigError(name, f"{kind} needs a list, got {values!r}")
    dimension = Dimension(key, kind, tuple(yaml_number(v) for v in values))
    if kind in RANGES:
        _check_range(dimension, name)
    if kind in ("uniform", "loguniform") and isinstance(current, int) and not isinstance(current, bool):
        # its bounds would pass the checks below, and every value drawn between them fail a trial
        raise ConfigError(name, f"{kind} draws real numbers, and {key} takes whole numbers: use randint or choice")
    for value in dimension.extremes():
        try:
            with_values(base, {key: value})
        except ConfigError as error:
            raise ConfigError(name, f"{kind} can give {value!r}, which the config refuses ({error})") from None
    return dimension


def _check_field(key: str, base: Config, name: str) -> Any:
    """The field's value in `base`, once `key` is known to name a field (not a section)."""
    node: Any = base
    for part in key.split("."):
        fields = {field.name for field in dataclasses.fields(node)} if dataclasses.is_dataclass(node) else set()
        if part not in fields:
            raise ConfigError(name, "is not a config field (fields are dotted paths such as algorithm.inner_lr)")
        node = getattr(node, part)
    if dataclasses.is_dataclass(node):
        raise ConfigError(name, "is a config section; search one of its fields")
    return node


def _check_range(dimension: Dimension, name: str) -> None:
    if len(dimension.values) != 2:
        raise ConfigError(name, f"{dimension.kind} needs [low, high], got {list(dimension.values)}")
    low, high = dimension.values
    numbers = (int,) if dimension.kind == "randint" else (int, float)
    if not all(isinstance(v, numbers) and not isinstance(v, bool) for v in (low, high)):
        kind = "integers" if dimension.kind == "randint" else "numbers"
        raise ConfigError(name, f"{dimension.kind} bounds must be {kind}, got {list(dimension.values)}")
    if not low < high:
        raise ConfigError(name, f"{dimension.kind} needs low < high, got [{low}, {high}]")
    if dimension.kind == "loguniform" and low <= 0:
        raise ConfigError(name, f"loguniform needs a positive low bound, got {low}")
