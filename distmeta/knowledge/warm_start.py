"""Warm starts: how the stored tasks near a new one are weighted into one starting point.

Two weightings of the k nearest stored tasks' deltas (adapted parameters less meta-parameters):
- by embedding distance (inverse distances, as k-NN regression): cheap, but on the multimodal
  regression family five noisy support points leave the embedding ambiguous between families
  (even the Bayes-optimal classifier names only ~78% of families, benchmarks/knowledge_base.py),
  and the mean of neighbours from other families blurs the start;
- by fit (the default of `Learner.adapt(warm_start="knowledge")`): the embedding retrieves
  `candidates` stored tasks, each candidate's stored adapted model is scored by its loss on the
  new support set, and the `k` that fit it best are combined with weights
  softmax(-loss / temperature). A stored model that already fits the support points is the
  strongest evidence a search can have of a similar task: it is judged on the new task's data,
  not on a summary of it. Costs one forward pass of the support set per candidate.
A classifier's warm start takes the body's stored deltas alone (`label_free_names`): on Omniglot
5-way 1-shot (benchmarks/knowledge_base_omniglot.py) the whole delta cost MAML 6.0 points of
accuracy, the body's 2.7.
Pure torch: no Ray.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from distmeta.algorithms.base import MetaAlgorithm, Params
from distmeta.models import part_names

INVERSE_DISTANCE_FLOOR = 1e-6
"""Added to distances before inverting them, so that an exact match does not divide by zero."""
DEFAULT_CANDIDATES = 50
"""Stored tasks the embedding retrieves for a fitted warm start to score."""
DEFAULT_TEMPERATURE = 0.2
"""Of the fitted weights, in units of the support loss (multimodal regression: MSE, noise variance
0.09). Scoring every stored task (300 tasks), 0.2 was the best of 0.05 / 0.2 / 1; with 50
candidates (600 tasks), 1 did a little better (-65% against -62%, within the intervals). A smaller
one keeps only the best fit."""

SupportLoss = Callable[[dict[str, torch.Tensor]], float]
"""A stored delta (by parameter name) -> the loss of meta-parameters + delta on the new support set."""


def label_free_names(algorithm: MetaAlgorithm, names: Iterable[str]) -> tuple[str, ...]:
    """The stored parameters whose meaning does not depend on a task's label order: all of them
    for regression; for classification the body's (`features`) alone. Row c of a classifier's head
    scores whatever class label c named in that stored task, and labels are drawn in an arbitrary
    order per task, so a stored head delta added to a new task's head pushes its classes towards
    unrelated classes of another task."""
    if not algorithm.is_classification:
        return tuple(names)
    body = part_names(algorithm.model, "features")
    return tuple(name for name in names if name in body)


def inverse_distance_weights(distances: torch.Tensor) -> torch.Tensor:
    weights = 1.0 / (distances.double() + INVERSE_DISTANCE_FLOOR)
    return weights / weights.sum()


def fit_weights(losses: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(-loss / temperature); a candidate whose loss is not finite (a diverged stored
    adaptation) gets no weight."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    scores = torch.where(losses.isfinite(), -losses.double() / temperature, torch.tensor(float("-inf")))
    return torch.softmax(scores, dim=0)


def support_loss_of(
    algorithm: MetaAlgorithm, meta_params: Params, support_x: torch.Tensor, support_y: torch.Tensor
) -> SupportLoss:
    """The `SupportLoss` of a task: a stored delta's model evaluated on this support set, unadapted."""

    def loss(delta: dict[str, torch.Tensor]) -> float:
        start = {
            **meta_params,
            **{name: meta_params[name] + value.to(meta_params[name]) for name, value in delta.items()},
        }
        with torch.no_grad():
            state = algorithm.adapt(start, support_x, support_y, 0, differentiable=False)
            return float(algorithm.loss(algorithm.predict(start, state, support_x), support_y))

    return loss
