"""Prototypical Networks (Snell, Swersky, Zemel, 2017): classify by the nearest class mean.

Adapting is computing one prototype per class, the mean embedding of its
support examples; the logits of a query are its negative squared Euclidean
distances to the prototypes. There are no inner gradient steps.

`PrototypeClassifier` is what Prototypical Networks and Proto-MAML share: classification
only, any number of ways, and only the embedding meta-learned (the head comes from
each task's prototypes).
"""

from __future__ import annotations

import torch

from distmeta.algorithms.base import MetaAlgorithm, Params
from distmeta.errors import ConfigError
from distmeta.models import features, part_names


def class_prototypes(embeddings: torch.Tensor, labels: torch.Tensor, ways: int) -> torch.Tensor:
    """(ways, features): the mean embedding of each class's examples."""
    # a comparison rather than F.one_hot, which checks label values and so cannot run under vmap
    classes = torch.arange(ways, device=labels.device)
    membership = (labels.unsqueeze(1) == classes).to(embeddings.dtype)
    counts = membership.sum(dim=0).clamp(min=1).unsqueeze(1)
    return membership.T @ embeddings / counts


def negative_squared_distances(embeddings: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """(examples, classes): -|e - c|^2 of each embedding to each class centre, the logits of
    the nearest-prototype rule."""
    # |e - c|^2 expanded, so that it is one matrix product (and vmap-friendly)
    return -(embeddings.square().sum(1, keepdim=True) - 2 * embeddings @ centres.T + centres.square().sum(1))


class PrototypeClassifier(MetaAlgorithm):
    """Base class of the algorithms that classify from class prototypes of `ways` classes."""

    def __init__(self, *args, ways: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.ways = ways

    @classmethod
    def extra_arguments(cls, settings, output_size: int) -> dict:
        return {"ways": output_size}

    @classmethod
    def check_settings(cls, settings, is_classification: bool, task_name: str) -> None:
        if not is_classification:
            raise ConfigError("algorithm.name", f"{cls.name} classifies; task {task_name} is a regression")

    def learned_model_parameters(self, model_params: Params) -> Params:
        """The embedding alone: the model's linear head is not meta-learned (prototypes stand in for it)."""
        feature_names = part_names(self.model, "features")
        return {name: value for name, value in model_params.items() if name in feature_names}

    def meta_parameters_for_ways(self, meta_params: Params, ways: int) -> Params:
        """The same: prototypes are made per task, for any number of classes."""
        return meta_params


class PrototypicalNetwork(PrototypeClassifier):
    name = "protonet"

    def adapt(self, meta_params: Params, support_x, support_y, steps: int, differentiable: bool) -> Params:
        embeddings = features(self.model, meta_params, support_x)
        return {"prototypes": class_prototypes(embeddings, support_y, self.ways)}

    def predict(self, meta_params: Params, adapted: Params, x: torch.Tensor) -> torch.Tensor:
        return negative_squared_distances(features(self.model, meta_params, x), adapted["prototypes"])
