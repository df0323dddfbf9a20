"""The algorithm registry: one entry per algorithm, looked up by the config's `algorithm.name`.

An entry is the algorithm's class. It owns everything the rest of distmeta needs to know
about it: its name, the fields of the algorithm section it alone reads (`own_settings`) and
their checks (`check_settings`), its construction from that section (`from_settings`), its
seeded initial meta-parameters and how they are re-sized for another number of ways. So
adding an algorithm is one module with its class, and one line in `distmeta/algorithms/__init__.py`.

`settings` is the config's algorithm section (`distmeta.config.AlgorithmConfig`), read by
attribute: this package does not import the application's config.
"""

from __future__ import annotations

from typing import Any

from distmeta.algorithms.base import MetaAlgorithm
from distmeta.errors import ConfigError
from distmeta.models import TwoPartModel


def registry_of(*classes: type[MetaAlgorithm]) -> dict[str, type[MetaAlgorithm]]:
    """{name: class}, refusing two algorithms of one name."""
    registry: dict[str, type[MetaAlgorithm]] = {}
    for cls in classes:
        if cls.name in registry:
            raise ValueError(f"two algorithms named {cls.name!r}: {registry[cls.name].__name__}, {cls.__name__}")
        registry[cls.name] = cls
    return registry


def check_settings(
    registry: dict[str, type[MetaAlgorithm]], settings: Any, is_classification: bool, task_name: str
) -> None:
    """Raise ConfigError naming the field if the algorithm section cannot run on this task:
    an unknown name, a field of another algorithm set (a dataclass's default means unset),
    or what the algorithm's own `check_settings` refuses."""
    if settings.name not in registry:
        raise ConfigError("algorithm.name", f"unknown value {settings.name!r} (choose from {', '.join(registry)})")
    cls = registry[settings.name]
    defaults = type(settings)()
    for other in registry.values():
        for field, purpose in other.own_settings.items():
            if field in cls.own_settings or getattr(settings, field) == getattr(defaults, field):
                continue
            raise ConfigError(
                f"algorithm.{field}",
                f"only {other.name} {purpose}; {settings.name} does not "
                f"(leave {field} at {getattr(defaults, field)!r})",
            )
    cls.check_settings(settings, is_classification, task_name)


def build(
    registry: dict[str, type[MetaAlgorithm]],
    settings: Any,
    model: TwoPartModel,
    is_classification: bool,
    output_size: int,
) -> MetaAlgorithm:
    """The algorithm named by `settings.name`, running `model` with `output_size` outputs."""
    return registry[settings.name].from_settings(settings, model, is_classification, output_size)
