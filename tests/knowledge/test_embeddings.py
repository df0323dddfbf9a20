"""Task embeddings: fixed size, deterministic for a checkpoint and a support set, for every algorithm."""

import pytest
import torch

from distmeta.knowledge import EMBEDDING_KINDS, EmbeddingSpec, task_embedding
from tests.conftest import classification_batch, make_algorithm, meta_params_for, regression_batch, tiny_conv4, tiny_mlp


@pytest.mark.parametrize("kind", EMBEDDING_KINDS)
@pytest.mark.parametrize("algorithm_name", ["maml", "fomaml", "reptile", "anil", "metasgd"])
def test_a_regression_embedding_has_the_asked_size_and_is_the_same_when_computed_again(kind, algorithm_name):
    model = tiny_mlp()
    algorithm = make_algorithm(algorithm_name, model, False)
    params = meta_params_for(algorithm, model)
    batch = regression_batch(tasks=1)
    spec = EmbeddingSpec(kind, 16, projection_seed=3)
    first = task_embedding(spec, algorithm, params, batch.support_x[0], batch.support_y[0])
    again = task_embedding(spec, algorithm, params, batch.support_x[0].clone(), batch.support_y[0].clone())
    assert first.shape == (16,) and first.dtype == torch.float32
    assert torch.equal(first, again)
    assert bool(torch.isfinite(first).all()) and first.abs().sum() > 0


@pytest.mark.parametrize("kind", EMBEDDING_KINDS)
@pytest.mark.parametrize("algorithm_name", ["maml", "anil", "protonet"])
def test_a_classification_embedding_has_the_asked_size_and_one_from_features_ignores_the_label_order(
    kind, algorithm_name
):
    model = tiny_conv4(ways=3)
    algorithm = make_algorithm(algorithm_name, model, True, ways=3)
    params = meta_params_for(algorithm, model)
    batch = classification_batch(tasks=1, ways=3)
    spec = EmbeddingSpec(kind, 8)
    if kind == "adapted" and algorithm_name in ("anil", "protonet"):  # no adapted body to embed
        with pytest.raises(ValueError, match="adapted embedding"):
            task_embedding(spec, algorithm, params, batch.support_x[0], batch.support_y[0])
        return
    embedding = task_embedding(spec, algorithm, params, batch.support_x[0], batch.support_y[0])
    assert embedding.shape == (8,)
    if kind == "features" or algorithm_name == "protonet":
        # the features ignore labels; ProtoNets' prototypes follow the labels, its distances do not
        relabelled = task_embedding(spec, algorithm, params, batch.support_x[0], batch.support_y[0].flip(0))
        assert torch.allclose(embedding, relabelled, atol=1e-5)


def test_different_tasks_have_different_embeddings_and_another_projection_seed_another_space():
    model = tiny_mlp()
    algorithm = make_algorithm("maml", model, False)
    params = meta_params_for(algorithm, model)
    batch = regression_batch(tasks=2)
    spec = EmbeddingSpec("gradient", 16, projection_seed=0)
    first = task_embedding(spec, algorithm, params, batch.support_x[0], batch.support_y[0])
    second = task_embedding(spec, algorithm, params, batch.support_x[1], batch.support_y[1])
    other_seed = task_embedding(
        EmbeddingSpec("gradient", 16, projection_seed=1), algorithm, params, batch.support_x[0], batch.support_y[0]
    )
    assert not torch.allclose(first, second)
    assert not torch.allclose(first, other_seed)


def test_an_unknown_embedding_kind_is_refused_by_name():
    with pytest.raises(ValueError, match="embedding kind must be one of"):
        EmbeddingSpec("fisher")
