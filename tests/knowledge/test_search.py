"""Exact search: the same neighbours as a direct computation of every distance, for both metrics."""

import pytest
import torch

from distmeta.knowledge import ExactIndex


def direct_neighbours(stored, queries, k, metric):
    if metric == "cosine":
        distances = 1 - torch.nn.functional.cosine_similarity(queries[:, None, :], stored[None, :, :], dim=-1)
    else:
        distances = torch.cdist(queries.double(), stored.double()).float()
    return distances.topk(k, dim=1, largest=False)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_the_index_finds_the_neighbours_that_every_distance_computed_directly_gives(metric):
    generator = torch.Generator().manual_seed(0)
    stored = torch.randn(500, 16, generator=generator)
    queries = torch.randn(20, 16, generator=generator)
    found = ExactIndex(stored, metric).search(queries, 5)
    expected = direct_neighbours(stored, queries, 5, metric)
    assert torch.equal(found.indices, expected.indices)
    assert torch.allclose(found.distances, expected.values, atol=1e-4)


def test_a_stored_row_is_its_own_nearest_neighbour_at_distance_zero():
    stored = torch.randn(50, 8, generator=torch.Generator().manual_seed(1))
    for metric in ("cosine", "euclidean"):
        found = ExactIndex(stored, metric).search(stored[7], 3)
        assert int(found.indices[0, 0]) == 7 and float(found.distances[0, 0]) < 1e-3


def test_k_larger_than_the_index_returns_every_row_and_bad_inputs_are_refused():
    index = ExactIndex(torch.randn(3, 4), "euclidean")
    assert index.search(torch.randn(4), 10).indices.shape == (1, 3)
    with pytest.raises(ValueError, match="metric must be one of"):
        ExactIndex(torch.randn(3, 4), "manhattan")
    with pytest.raises(ValueError, match="non-empty"):
        ExactIndex(torch.zeros(0, 4))
