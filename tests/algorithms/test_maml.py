"""MAML's meta-gradient: finite differences, the plain per-task reference, and its first-order variant."""

import pytest
import torch
from torch.func import functional_call

from distmeta.execution import batch_meta_gradient
from distmeta.reference import maml_batch_gradient
from tests.conftest import classification_batch, make_algorithm, meta_params_for, regression_batch, tiny_conv4, tiny_mlp


def one_task(batch, i):
    return tuple(t[i] for t in batch.tensors())


def test_second_order_meta_gradient_matches_finite_differences():
    model = tiny_mlp()
    maml = make_algorithm("maml", model, False, inner_lr=0.05, inner_steps=2)
    params = meta_params_for(maml, model)
    task = one_task(regression_batch(tasks=1), 0)
    grads, loss, _ = maml.task_meta_gradient(params, *task)
    eps = 1e-6
    for name, value in params.items():
        for index in range(value.numel()):

            def loss_at(delta, name=name, value=value, index=index):
                shifted = dict(params)
                flat = value.clone().reshape(-1)
                flat[index] += delta
                shifted[name] = flat.reshape(value.shape)
                return maml.query_loss(shifted, *task)[0].item()

            numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
            assert grads[name].reshape(-1)[index].item() == pytest.approx(numeric, rel=1e-5, abs=1e-8), name


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("model_name", ["mlp", "conv4"])
def test_both_strategies_match_a_plain_autograd_loop(first_order, model_name):
    classification = model_name == "conv4"
    model = tiny_conv4(3) if classification else tiny_mlp()
    batch = classification_batch(tasks=2) if classification else regression_batch(tasks=3)
    name = "fomaml" if first_order else "maml"
    maml = make_algorithm(name, model, classification, 3 if classification else 1)
    params = meta_params_for(maml, model)
    expected = maml_batch_gradient(model, params, batch, maml.inner_lr, maml.inner_steps, first_order, classification)
    for strategy in ("vmap", "loop"):
        result = batch_meta_gradient(maml, params, batch, strategy)
        for k in params:
            torch.testing.assert_close(result.grad_sum[k], expected[k], rtol=1e-7, atol=1e-12, msg=f"{strategy} {k}")


def test_first_order_maml_is_maml_without_the_second_order_term():
    # first-order MAML's meta-gradient is the query-loss gradient at the adapted weights
    model = tiny_mlp()
    fomaml = make_algorithm("fomaml", model, False, inner_steps=3)
    maml = make_algorithm("maml", model, False, inner_steps=3)
    params = meta_params_for(maml, model)
    task = one_task(regression_batch(tasks=1), 0)
    adapted = maml.adapt(params, *task[:2], steps=3, differentiable=False)
    at_adapted = {k: v.detach().requires_grad_(True) for k, v in adapted.items()}
    query_loss = torch.nn.functional.mse_loss(functional_call(model, at_adapted, (task[2],)), task[3])
    expected = dict(zip(at_adapted, torch.autograd.grad(query_loss, list(at_adapted.values()))))
    first_order, _, _ = fomaml.task_meta_gradient(params, *task)
    second_order, _, _ = maml.task_meta_gradient(params, *task)
    for k in params:
        torch.testing.assert_close(first_order[k], expected[k])
    assert any(not torch.allclose(first_order[k], second_order[k]) for k in params)
