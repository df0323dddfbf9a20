"""Multi-learner routing: of several learners (one run per task family, say), the one whose
knowledge base covers a new task best.

Each learner's embeddings live in its own space, so their distances do not compare across
learners; a loss does. Each learner scores the task by how well its best stored model (among its
embedding's nearest candidates, `Learner.stored_fit`) fits the task's support set; the task goes
to the learner with the lowest such loss. Learners must share the task's kind (all regression
with the same output size, or all classifiers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from distmeta.api import Learner
from distmeta.errors import DistmetaError
from distmeta.knowledge import SimilarTask
from distmeta.knowledge.warm_start import DEFAULT_CANDIDATES


@dataclass(frozen=True)
class Route:
    """The chosen learner, and every learner's best stored fit (nearest stored task, support loss)."""

    learner: Learner
    fits: list[tuple[SimilarTask, float]]


def route(learners: list[Learner], support_x, support_y, candidates: int = DEFAULT_CANDIDATES) -> Route:
    """The learner whose stored models fit this support set best; each learner's fit, in order."""
    if not learners:
        raise DistmetaError("route: give at least one learner (each loaded from a run with a knowledge base)")
    fits = [learner.stored_fit(support_x, support_y, candidates) for learner in learners]
    best = min(range(len(learners)), key=lambda i: fits[i][1] if math.isfinite(fits[i][1]) else math.inf)
    return Route(learners[best], fits)
