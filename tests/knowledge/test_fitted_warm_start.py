"""Fitted warm starts: the stored models that fit the new support set best, weighted by that fit."""

import math

import pytest
import torch

from distmeta.errors import KnowledgeBaseError
from distmeta.knowledge import KnowledgeBase, StoreHeader, TaskRecords
from distmeta.knowledge.records import METRIC_COLUMNS
from distmeta.knowledge.warm_start import fit_weights


def synthetic_base(rows: int = 6) -> KnowledgeBase:
    """Row r: embedding (r, 0), delta of parameter `w` all equal to r."""
    header = StoreHeader(
        run="r",
        config_hash="h",
        step=0,
        embedding_kind="features",
        embedding_size=2,
        projection_seed=0,
        inner_steps=1,
        adapted_names=("w",),
        adapted_shapes=((2,),),
    )
    records = TaskRecords(
        task_index=list(range(rows)),
        task_seed=list(range(rows)),
        split=["train"] * rows,
        family=[None] * rows,
        embedding=torch.tensor([[float(r), 0.0] for r in range(rows)]),
        adapted_delta=torch.arange(rows, dtype=torch.float16).repeat_interleave(2).reshape(rows, 2),
        metrics={name: torch.zeros(rows, dtype=torch.float64) for name in METRIC_COLUMNS},
    )
    return KnowledgeBase(header, records)


def loss_by_row(losses: dict[int, float], default: float = 10.0):
    """A support loss that knows each row by its (constant) delta value."""

    def loss(delta):
        value = float(delta["w"][0])
        return losses.get(int(value), default) if math.isfinite(value) else math.nan  # a diverged model's loss

    return loss


def test_the_best_fitting_candidate_wins_over_the_nearest_embedding():
    base = synthetic_base()
    delta = base.fitted_warm_start_delta(torch.tensor([0.0, 0.0]), loss_by_row({4: 0.01}), k=1, candidates=6)
    assert torch.equal(delta["w"], torch.full((2,), 4.0))


def test_only_the_embeddings_candidates_are_scored():
    base = synthetic_base()
    # row 5 fits best but is not among the 3 nearest of (0, 0); of rows 0-2, row 2 fits best
    delta = base.fitted_warm_start_delta(torch.tensor([0.0, 0.0]), loss_by_row({5: 0.0, 2: 0.5}), k=1, candidates=3)
    assert torch.equal(delta["w"], torch.full((2,), 2.0))


def test_equal_fits_share_the_weight_and_a_diverged_model_gets_none():
    base = synthetic_base()
    delta = base.fitted_warm_start_delta(
        torch.tensor([0.0, 0.0]), loss_by_row({1: 0.1, 3: 0.1, 0: math.nan}), k=3, candidates=6, temperature=0.01
    )
    assert torch.allclose(delta["w"], torch.full((2,), 2.0), atol=1e-4)  # (1 + 3) / 2, the rest ~0
    assert torch.equal(fit_weights(torch.tensor([0.0, math.inf]), 1.0), torch.tensor([1.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="temperature"):
        fit_weights(torch.tensor([0.0]), 0.0)


def test_a_store_whose_models_all_diverge_on_the_support_set_says_so():
    base = synthetic_base()
    with pytest.raises(KnowledgeBaseError, match="finite loss"):
        base.fitted_warm_start_delta(torch.tensor([0.0, 0.0]), lambda delta: math.nan, k=2)


def test_a_stored_adaptation_that_diverged_never_enters_a_warm_start():
    base = synthetic_base()
    base.records.adapted_delta[0] = float("nan")
    base = KnowledgeBase(base.header, base.records)
    near_zero = torch.tensor([0.0, 0.0])  # row 0 is the nearest, and fits best by its (made-up) loss
    delta = base.warm_start_delta(near_zero, 2)
    assert bool(delta["w"].isfinite().all()) and float(delta["w"][0]) == pytest.approx(1 + (2 - 1) / 3, abs=1e-3)
    fitted = base.fitted_warm_start_delta(near_zero, loss_by_row({1: 0.5}, default=1.0), k=6, candidates=6)
    assert bool(fitted["w"].isfinite().all())
