"""MMAML, ALFA and Proto-MAML: finite-difference meta-gradients, vmap == loop, and what each generates."""

import pytest
import torch

from distmeta.algorithms import check_algorithm_settings
from distmeta.algorithms.protonet import PrototypicalNetwork
from distmeta.config import AlgorithmConfig, MMAMLConfig
from distmeta.errors import ConfigError
from distmeta.execution import batch_evaluation, batch_meta_gradient
from distmeta.models import Conv4
from tests.conftest import classification_batch, make_algorithm, meta_params_for, regression_batch, tiny_conv4, tiny_mlp


def small_conv4():
    """Conv4 on 16x16 images (16 -> 8 -> 4 -> 2 -> 1): the real blocks at a quarter of the cost."""
    return Conv4(1, 4, 3, 16).double()


def small_images(tasks=3, shots=1, query=2):
    batch = classification_batch(tasks=tasks, shots=shots, query=query)
    return type(batch)(
        batch.support_x[..., :16, :16], batch.support_y, batch.query_x[..., :16, :16], batch.query_y, seed=batch.seed
    )


def one_task(batch, i=0):
    return tuple(t[i] for t in batch.tensors())


def perturbed(params, seed=1, scale=0.3):
    """Meta-parameters moved off their initialisation, so that no path of the meta-gradient is
    zero by construction (e.g. a zero-initialised output layer)."""
    g = torch.Generator().manual_seed(seed)
    return {
        k: v + scale * v.abs().mean().clamp(min=0.01) * torch.randn(v.shape, generator=g, dtype=v.dtype)
        for k, v in params.items()
    }


def assert_matches_finite_differences(algorithm, params, task, entries_per_tensor=3, prefix=""):
    grads, _, _ = algorithm.task_meta_gradient(params, *task)
    eps = 1e-6
    for name, value in params.items():
        if not name.startswith(prefix):
            continue
        for index in torch.linspace(0, value.numel() - 1, min(entries_per_tensor, value.numel())).long().tolist():

            def loss_at(delta):
                flat = value.clone().reshape(-1)
                flat[index] += delta
                return algorithm.query_loss({**params, name: flat.reshape(value.shape)}, *task)[0].item()

            numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
            assert grads[name].reshape(-1)[index].item() == pytest.approx(numeric, rel=1e-4, abs=1e-8), name


def setups(name):
    """(label, model, algorithm, batch): the regression MLP for MMAML and ALFA, Conv4 for ALFA and
    an MLP classifier for Proto-MAML (its Conv4 is the finite-difference test's and the ProtoNets one's;
    MMAML's Conv4 is tests/algorithms/test_mmaml_images.py's, in threads)."""
    steps = {"inner_steps": 2, "test_inner_steps": 2}  # ALFA adapts for the steps it has rates for
    if name in ("mmaml", "alfa"):
        mlp = tiny_mlp()
        yield "mlp", mlp, make_algorithm(name, mlp, False, **steps), regression_batch(tasks=3)
    if name == "alfa":
        conv = small_conv4()
        yield "conv4", conv, make_algorithm(name, conv, True, 3, **steps), small_images(tasks=2)
    if name == "protomaml":
        mlp = tiny_mlp(4, 3)
        yield "mlp", mlp, make_algorithm(name, mlp, True, 3), classification_batch(tasks=3, image=False)


@pytest.mark.parametrize("name", ["mmaml", "alfa"])
def test_the_second_order_regression_meta_gradient_matches_finite_differences(name):
    model = tiny_mlp()
    algorithm = make_algorithm(name, model, False, inner_steps=2)
    params = perturbed(meta_params_for(algorithm, model))
    assert_matches_finite_differences(algorithm, params, one_task(regression_batch(tasks=1)))


def test_an_inner_gradient_clip_changes_the_steps_and_its_meta_gradient_still_matches_finite_differences_and_the_loop():
    # a clip of 0.05 is below most of these inner gradients' entries: clamped ones pass no second-order term
    model = tiny_mlp()
    clipped = make_algorithm("mmaml", model, False, inner_steps=2, inner_grad_clip=0.05)
    plain = make_algorithm("mmaml", model, False, inner_steps=2)
    params = perturbed(meta_params_for(clipped, model))
    task = one_task(regression_batch(tasks=1))
    assert_matches_finite_differences(clipped, params, task)
    assert clipped.query_loss(params, *task)[0].item() != pytest.approx(plain.query_loss(params, *task)[0].item())
    batch = regression_batch(tasks=3)
    vmapped = batch_meta_gradient(clipped, params, batch, "vmap")
    looped = batch_meta_gradient(clipped, params, batch, "loop")
    for key in params:
        torch.testing.assert_close(vmapped.grad_sum[key], looped.grad_sum[key], rtol=1e-6, atol=1e-10, msg=key)


def test_the_second_order_proto_maml_meta_gradient_matches_finite_differences():
    model = tiny_mlp(4, 3)
    algorithm = make_algorithm("protomaml", model, True, 3, inner_steps=2)
    params = perturbed(meta_params_for(algorithm, model))
    task = one_task(classification_batch(tasks=1, shots=2, image=False))
    assert_matches_finite_differences(algorithm, params, task)


@pytest.mark.parametrize("name", ["mmaml", "alfa", "protomaml"])
def test_first_order_keeps_the_direct_paths_and_drops_only_the_inner_gradients_derivative(name):
    # first order is no function's gradient, so no finite differences: it is the derivative of the query
    # loss with the inner gradients held constant, here rebuilt by hand from the adapted state
    classification = name == "protomaml"
    model = tiny_mlp(4, 3) if classification else tiny_mlp()
    ways = 3 if classification else 1
    first = make_algorithm(name, model, classification, ways, inner_steps=2, first_order=True)
    second = make_algorithm(name, model, classification, ways, inner_steps=2)
    params = perturbed(meta_params_for(first, model))
    batch = classification_batch(tasks=1, shots=2, image=False) if classification else regression_batch(tasks=1)
    task = one_task(batch)
    ours, _, _ = first.task_meta_gradient(params, *task)
    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    frozen_grads = first.using_autograd(own_model=False)
    loss, _ = frozen_grads.query_loss(leaves, *task, differentiable=False)
    expected = dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)))
    for key in params:
        torch.testing.assert_close(
            ours[key], expected[key] if expected[key] is not None else torch.zeros_like(params[key]), msg=key
        )
    full, _, _ = second.task_meta_gradient(params, *task)
    assert any(not torch.allclose(ours[k], full[k]) for k in params)


def test_alfa_on_conv4_matches_finite_differences_for_its_rule_parameters():
    # the rule's own (the model's, through batch norm over 3 images, are ill-conditioned for differences;
    # MAML's tests check the Conv4 path)
    model = tiny_conv4(3)
    algorithm = make_algorithm("alfa", model, True, 3, inner_steps=2)
    params = perturbed(meta_params_for(algorithm, model))
    task = one_task(classification_batch(tasks=1))
    assert_matches_finite_differences(algorithm, params, task, entries_per_tensor=2, prefix="alfa.")


@pytest.mark.parametrize("name", ["mmaml", "alfa", "protomaml"])
def test_vmap_and_loop_give_equal_meta_gradients_and_evaluations(name):
    for label, model, algorithm, batch in setups(name):
        params = perturbed(meta_params_for(algorithm, model))
        vmapped = batch_meta_gradient(algorithm, params, batch, "vmap")
        looped = batch_meta_gradient(algorithm, params, batch, "loop")
        assert set(vmapped.grad_sum) == set(params)
        for key in params:
            torch.testing.assert_close(
                vmapped.grad_sum[key], looped.grad_sum[key], rtol=1e-5, atol=1e-10, msg=f"{name} on {label}: {key}"
            )
        assert all(vmapped.grad_sum[key].abs().sum() > 0 for key in params), f"{name} on {label}: a zero gradient"
        torch.testing.assert_close(
            batch_evaluation(algorithm, params, batch, algorithm.test_inner_steps, "vmap"),
            batch_evaluation(algorithm, params, batch, algorithm.test_inner_steps, "loop"),
            rtol=1e-5,
            atol=1e-12,
        )


def test_proto_maml_before_fine_tuning_predicts_what_protonets_predicts_on_the_support_embedding():
    model = small_conv4()
    protomaml = make_algorithm("protomaml", model, True, 3)
    protonet = PrototypicalNetwork(model, True, 0.4, 2, 3, ways=3)
    params = perturbed(meta_params_for(protomaml, model))
    support_x, support_y, query_x, _ = one_task(small_images(tasks=1, shots=3, query=4))
    head = protomaml.adapt(params, support_x, support_y, steps=0, differentiable=False)
    ours = protomaml.predict(params, head, query_x)
    theirs = protonet.predict(params, protonet.adapt(params, support_x, support_y, 0, False), query_x)
    # the logits differ by -||e||^2 of each query alone: the same softmax, the same predicted class
    torch.testing.assert_close(ours.softmax(-1), theirs.softmax(-1), rtol=1e-9, atol=1e-12)
    assert torch.equal(ours.argmax(-1), theirs.argmax(-1))
    assert len(set(theirs.argmax(-1).tolist())) > 1
    after = protomaml.predict(params, protomaml.adapt(params, support_x, support_y, 3, False), query_x)
    assert not torch.allclose(after, ours)


def test_mmaml_modulates_each_task_by_its_support_set_and_starts_near_plain_maml():
    model = tiny_mlp()
    mmaml = make_algorithm("mmaml", model, False)
    params = meta_params_for(mmaml, model)
    batch = regression_batch(tasks=3)
    film = torch.stack([mmaml.task_conditioning(params, *one_task(batch, i)[:2]) for i in range(3)])
    assert film.shape == (3, 2 * (8 + 8))
    assert film.std(0).mean() > 0  # tasks with other support sets get other modulations
    assert film.abs().max() < 1.0  # a tenth of the usual initialisation: close to the identity
    shuffled = torch.randperm(5)
    support_x, support_y = one_task(batch)[:2]
    torch.testing.assert_close(mmaml.task_conditioning(params, support_x[shuffled], support_y[shuffled]), film[0])


def test_mmaml_with_the_authors_lstm_encoder_reads_the_support_points_in_order_and_its_meta_gradient_is_exact():
    model = tiny_mlp()
    mmaml = make_algorithm("mmaml", model, False, mmaml=MMAMLConfig(encoder="lstm"))
    params = perturbed(meta_params_for(mmaml, model))
    assert any(name.startswith("encoder.backward_layers.1.") for name in params)
    batch = regression_batch(tasks=3)
    support_x, support_y = one_task(batch)[:2]
    in_order = mmaml.task_conditioning(params, support_x, support_y)
    reversed_order = mmaml.task_conditioning(params, support_x.flip(0), support_y.flip(0))
    assert in_order.shape == (2 * (8 + 8),) and not torch.allclose(in_order, reversed_order)
    assert_matches_finite_differences(mmaml, params, one_task(batch), prefix="encoder.")
    vmapped = batch_meta_gradient(mmaml, params, batch, "vmap")
    looped = batch_meta_gradient(mmaml, params, batch, "loop")
    for key in params:
        torch.testing.assert_close(vmapped.grad_sum[key], looped.grad_sum[key], rtol=1e-6, atol=1e-10, msg=key)


def test_alfa_records_its_rate_and_decay_multipliers_per_step_and_refuses_steps_it_has_no_rate_for():
    model = tiny_mlp()
    alfa = make_algorithm("alfa", model, False, inner_steps=2, test_inner_steps=2)
    params = meta_params_for(alfa, model)
    layers = len(list(model.parameters()))
    assert params["alfa.rate"].shape == (2, layers) and params["alfa.decay"].shape == (2, layers)
    support_x, support_y = one_task(regression_batch(tasks=1))[:2]
    assert alfa.task_conditioning(params, support_x, support_y).shape == (2 * 2 * layers,)
    adapted = alfa.adapt(params, support_x, support_y, steps=2, differentiable=False)
    assert all(torch.isfinite(v).all() for v in adapted.values())
    with pytest.raises(ValueError, match="for 2 inner step.*not for step 3"):
        alfa.adapt(params, support_x, support_y, steps=3, differentiable=False)


def test_alfa_with_zero_network_and_decay_is_maml_at_its_per_step_rate():
    model = tiny_mlp()
    alfa = make_algorithm("alfa", model, False, inner_steps=2, inner_lr=0.05)
    maml = make_algorithm("maml", model, False, inner_steps=2, inner_lr=0.05)
    params = meta_params_for(alfa, model)
    params = {k: torch.zeros_like(v) if k.startswith(("alfa.net.1", "alfa.decay")) else v for k, v in params.items()}
    support_x, support_y = one_task(regression_batch(tasks=1))[:2]
    ours = alfa.adapt(params, support_x, support_y, 2, False)
    theirs = maml.adapt(alfa.model_parameters(params), support_x, support_y, 2, False)
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key])


@pytest.mark.parametrize(
    "settings, classification, field",
    [
        (AlgorithmConfig(name="protomaml"), False, "algorithm.name"),
        (AlgorithmConfig(name="alfa", inner_steps=0), False, "algorithm.inner_steps"),
        (AlgorithmConfig(name="alfa", inner_steps=1, test_inner_steps=10), True, "algorithm.test_inner_steps"),
        (AlgorithmConfig(name="mmaml", mmaml=MMAMLConfig(encoder="gru")), False, "algorithm.mmaml.encoder"),
        (AlgorithmConfig(name="mmaml", mmaml=MMAMLConfig(encoder="lstm")), True, "algorithm.mmaml.encoder"),
        (AlgorithmConfig(name="maml", mmaml=MMAMLConfig(encoder="lstm")), False, "algorithm.mmaml"),
    ],
)
def test_settings_an_algorithm_cannot_run_are_refused_naming_the_field(settings, classification, field):
    with pytest.raises(ConfigError) as error:
        check_algorithm_settings(settings, classification, "omniglot" if classification else "multimodal")
    assert error.value.field == field


def test_mmaml_in_the_loops_threads_gives_each_thread_its_own_encoder():
    # The module's own weights are float32, the meta-parameters float64: a thread that ran
    # the shared encoder while another restored its weights would mix the two and fail.
    from distmeta.models import MLP

    model = MLP(1, (8, 8), 1)  # float32, unlike the tests' float64 models
    algorithm = make_algorithm("mmaml", model, is_classification=False)
    params = {name: value.double() for name, value in meta_params_for(algorithm, model).items()}
    twin = algorithm.using_autograd()
    assert twin.encoder is not algorithm.encoder and twin.model is not algorithm.model
    looped = batch_meta_gradient(algorithm, params, regression_batch(tasks=8), "loop")
    vmapped = batch_meta_gradient(algorithm, params, regression_batch(tasks=8), "vmap")
    for key in params:
        torch.testing.assert_close(looped.grad_sum[key], vmapped.grad_sum[key], rtol=1e-5, atol=1e-10)
