"""Meta-learning algorithms, each a small class behind `MetaAlgorithm`, registered by name."""

from __future__ import annotations

from torch import nn

from distmeta.algorithms.anil import ANIL
from distmeta.algorithms.base import MetaAlgorithm, Params
from distmeta.algorithms.maml import MAML, FirstOrderMAML
from distmeta.algorithms.metasgd import MetaSGD
from distmeta.algorithms.protonet import PrototypicalNetwork
from distmeta.algorithms.reptile import Reptile
from distmeta.config import AlgorithmConfig

ALGORITHMS: dict[str, type[MetaAlgorithm]] = {
    cls.name: cls for cls in (MAML, FirstOrderMAML, Reptile, ANIL, MetaSGD, PrototypicalNetwork)
}

__all__ = ["ALGORITHMS", "MetaAlgorithm", "Params", "build_algorithm"]


def build_algorithm(config: AlgorithmConfig, model: nn.Module, is_classification: bool, output_size: int) -> MetaAlgorithm:
    """The algorithm named by `config.name`, running `model`."""
    cls = ALGORITHMS[config.name]
    kwargs = dict(
        model=model,
        is_classification=is_classification,
        inner_lr=config.inner_lr,
        inner_steps=config.inner_steps,
        test_inner_steps=config.test_inner_steps,
        first_order=config.first_order,
    )
    if cls is PrototypicalNetwork:
        kwargs["ways"] = output_size
    if cls is Reptile:
        kwargs["inner_batch_size"] = config.inner_batch_size
    return cls(**kwargs)
