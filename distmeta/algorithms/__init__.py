"""Meta-learning algorithms, each a small class behind `MetaAlgorithm`, registered by name.

Adding an algorithm: a module with its class (a `MetaAlgorithm`), and its line below.
"""

from __future__ import annotations

from typing import Any

from distmeta.algorithms import registry
from distmeta.algorithms.alfa import ALFA
from distmeta.algorithms.anil import ANIL
from distmeta.algorithms.base import MetaAlgorithm, Params
from distmeta.algorithms.estimators import MetaGradient
from distmeta.algorithms.leo import LEO
from distmeta.algorithms.maml import MAML, FirstOrderMAML
from distmeta.algorithms.metasgd import MetaSGD
from distmeta.algorithms.mmaml import MMAML
from distmeta.algorithms.protomaml import ProtoMAML
from distmeta.algorithms.protonet import PrototypicalNetwork
from distmeta.algorithms.reptile import Reptile
from distmeta.models import TwoPartModel

ALGORITHMS: dict[str, type[MetaAlgorithm]] = registry.registry_of(
    MAML,
    FirstOrderMAML,
    Reptile,
    ANIL,
    MetaSGD,
    PrototypicalNetwork,
    MMAML,
    ALFA,
    ProtoMAML,
    LEO,
)

__all__ = ["ALGORITHMS", "MetaAlgorithm", "MetaGradient", "Params", "build_algorithm", "check_algorithm_settings"]


def build_algorithm(settings: Any, model: TwoPartModel, is_classification: bool, output_size: int) -> MetaAlgorithm:
    """The algorithm that the config's algorithm section `settings` names, running `model`."""
    return registry.build(ALGORITHMS, settings, model, is_classification, output_size)


def check_algorithm_settings(settings: Any, is_classification: bool, task_name: str) -> None:
    """Raise ConfigError naming the field if the algorithm section cannot run on this task."""
    registry.check_settings(ALGORITHMS, settings, is_classification, task_name)
