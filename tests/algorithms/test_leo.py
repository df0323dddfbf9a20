"""LEO: the generated head's meta-gradient against finite differences (with either head), vmap ==
loop, a task's own noise, the distance head against ProtoNets, frozen features from a distmeta
run, and the settings it refuses."""

import dataclasses

import pytest
import torch

from distmeta.algorithms import check_algorithm_settings
from distmeta.algorithms.leo import decoder_orthogonality, orthogonality_penalty
from distmeta.algorithms.task_noise import task_normal_noise
from distmeta.config import AlgorithmConfig, LEOConfig, config_hash, load_config
from distmeta.errors import ConfigError
from distmeta.execution import batch_evaluation, batch_meta_gradient
from distmeta.models import Conv4
from tests.algorithms.test_task_conditioned import assert_matches_finite_differences, one_task, perturbed
from tests.conftest import classification_batch, make_algorithm, meta_params_for, tiny_mlp

SMALL = LEOConfig(latent_size=3, finetune_steps=2, finetune_lr=0.05, kl_weight=0.1, orthogonality_weight=0.1)
"""The KL and orthogonality terms weighed enough to show in a finite difference. Not the encoder
penalty: it holds the adapted latent constant (a stop-gradient, as the paper's), so that no
finite difference of the meta-loss is its derivative; the first-order test covers it."""


def leo(model, ways=3, settings=SMALL, **overrides):
    return make_algorithm("leo", model, True, ways, inner_lr=0.5, leo=settings, **overrides)


def features_task(tasks=1, shots=2, seed=0):
    return classification_batch(tasks=tasks, shots=shots, image=False, seed=seed)


@pytest.mark.parametrize("head", ["linear", "distance"])
def test_the_second_order_meta_gradient_through_latent_and_fine_tuning_steps_matches_finite_differences(head):
    model = tiny_mlp(4, 3)
    algorithm = leo(model, settings=dataclasses.replace(SMALL, head=head)).using_autograd(
        own_model=False
    )  # the faster of the two, equal by the vmap test
    params = perturbed(meta_params_for(algorithm, model))
    assert_matches_finite_differences(algorithm, params, one_task(features_task()), entries_per_tensor=2)


def test_first_order_holds_the_inner_gradients_constant_and_keeps_the_direct_paths():
    model = tiny_mlp(4, 3)
    settings = dataclasses.replace(SMALL, encoder_penalty_weight=0.1)
    first, second = leo(model, settings=settings, first_order=True), leo(model, settings=settings)
    params = perturbed(meta_params_for(first, model))
    task = one_task(features_task())
    ours, _, _ = first.task_meta_gradient(params, *task)
    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    loss, _ = first.using_autograd(own_model=False).query_loss(leaves, *task, differentiable=False)
    expected = dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))
    for key in params:
        torch.testing.assert_close(ours[key], expected[key], msg=key)
    full, _, _ = second.task_meta_gradient(params, *task)
    assert any(not torch.allclose(ours[k], full[k]) for k in params)


@pytest.mark.parametrize("body", ["mlp", "conv4"])
def test_vmap_and_loop_give_equal_meta_gradients_and_evaluations(body):
    if body == "mlp":
        model, batch = tiny_mlp(4, 3), features_task(tasks=3)
    else:  # 16x16 images: the real blocks at a quarter of the cost
        model, full = Conv4(1, 4, 3, 16).double(), classification_batch(tasks=2)
        batch = type(full)(full.support_x[..., :16, :16], full.support_y, full.query_x[..., :16, :16], full.query_y, 0)
    algorithm = leo(model)
    params = perturbed(meta_params_for(algorithm, model))
    vmapped = batch_meta_gradient(algorithm, params, batch, "vmap")
    looped = batch_meta_gradient(algorithm, params, batch, "loop")
    for key in params:
        torch.testing.assert_close(vmapped.grad_sum[key], looped.grad_sum[key], rtol=1e-5, atol=1e-10, msg=key)
        assert vmapped.grad_sum[key].abs().sum() > 0, key
    torch.testing.assert_close(
        batch_evaluation(algorithm, params, batch, 3, "vmap"), batch_evaluation(algorithm, params, batch, 3, "loop")
    )


def test_each_task_samples_its_own_standard_normal_noise_the_same_wherever_it_runs():
    batch = classification_batch(tasks=2)
    first = task_normal_noise(batch.support_x[0], (100, 100), torch.float64)
    assert torch.equal(first, task_normal_noise(batch.support_x[0].clone(), (100, 100), torch.float64))
    assert first.mean().abs() < 0.03 and (first.std() - 1).abs() < 0.03
    assert (first.abs() > 3).float().mean() < 0.005  # tails of a normal: 0.27% beyond 3 sigma
    other = task_normal_noise(batch.support_x[1], (100, 100), torch.float64)
    assert torch.corrcoef(torch.stack([first.flatten(), other.flatten()]))[0, 1].abs() < 0.05
    batched = torch.func.vmap(lambda x: task_normal_noise(x, (100, 100), torch.float64))(batch.support_x)
    assert torch.equal(batched[0], first) and torch.equal(batched[1], other)


def test_meta_training_samples_latents_while_adaptation_uses_their_means():
    model = tiny_mlp(4, 3)
    algorithm = leo(model)
    params = meta_params_for(algorithm, model)
    support_x, support_y, query_x, query_y = one_task(features_task())
    sampled, _ = algorithm.generate_and_adapt(params, support_x, support_y, 0, False, sample=True)
    mean, _ = algorithm.latent_distribution(params, algorithm.embed(params, support_x), support_y)
    assert not torch.allclose(sampled["latents"], mean)
    adapted = algorithm.adapt(params, support_x, support_y, 0, False)
    torch.testing.assert_close(adapted["latents"], mean)
    # the head has one row per class of the task: another number of ways, the same meta-parameters
    five = leo(tiny_mlp(4, 5), ways=5)
    support = classification_batch(tasks=1, ways=5, image=False)
    adapted = five.adapt(params, support.support_x[0], support.support_y[0], 2, False)
    assert five.predict(params, adapted, support.query_x[0]).shape == (10, 5)


def test_the_decoder_s_penalty_correlates_its_latent_directions_as_the_reference_s():
    """Nothing for a (features, latent) decoder whose latent columns are orthonormal, though its
    feature rows, more than the latent size, cannot all be orthogonal."""
    generator = torch.Generator().manual_seed(0)
    decoder = torch.linalg.qr(torch.randn(16, 4, generator=generator, dtype=torch.float64)).Q
    assert decoder_orthogonality(decoder) < 1e-12
    assert orthogonality_penalty(decoder) > 0.01


def test_the_distance_head_with_the_decoder_at_zero_classifies_as_protonets():
    model = tiny_mlp(4, 3)
    algorithm = leo(model, settings=dataclasses.replace(SMALL, head="distance", finetune_steps=0))
    params = meta_params_for(algorithm, model)
    params["leo.decoder.weight"] = torch.zeros_like(params["leo.decoder.weight"])
    support_x, support_y, query_x, _ = one_task(features_task())
    protonet = make_algorithm("protonet", model, True, 3)
    expected = protonet.predict(params, protonet.adapt(params, support_x, support_y, 0, False), query_x)
    adapted = algorithm.adapt(
        params, support_x, support_y, 2, False
    )  # latent steps move nothing through a zero decoder
    torch.testing.assert_close(algorithm.predict(params, adapted, query_x), expected)
    linear = leo(model, settings=dataclasses.replace(SMALL, finetune_steps=0))
    assert not torch.allclose(
        linear.predict(params, linear.adapt(params, support_x, support_y, 2, False), query_x), expected
    )


def test_an_older_leo_config_keeps_its_hash_with_the_linear_head():
    # ce2db49bd2ef595c: this config's hash before algorithm.leo.head existed
    overrides = [
        "algorithm.name=leo",
        "task.name=omniglot",
        "task.omniglot.synthetic=true",
        "algorithm.leo.latent_size=8",
    ]
    assert config_hash(load_config(None, overrides)) == "ce2db49bd2ef595c"
    assert config_hash(load_config(None, [*overrides, "algorithm.leo.head=distance"])) != "ce2db49bd2ef595c"


def test_the_conditioning_is_each_class_latent_mean_and_differs_between_tasks():
    model = tiny_mlp(4, 3)
    algorithm = leo(model)
    params = meta_params_for(algorithm, model)
    batch = features_task(tasks=3)
    latents = torch.stack([algorithm.task_conditioning(params, *one_task(batch, i)[:2]) for i in range(3)])
    assert latents.shape == (3, 3 * SMALL.latent_size)
    assert latents.std(0).mean() > 0


@pytest.mark.parametrize(
    "settings, classification, field",
    [
        (AlgorithmConfig(name="leo", leo=LEOConfig(latent_size=0)), True, "algorithm.leo.latent_size"),
        (AlgorithmConfig(name="leo", leo=LEOConfig(finetune_steps=-1)), True, "algorithm.leo.finetune_steps"),
        (AlgorithmConfig(name="leo", leo=LEOConfig(finetune_lr=0.0)), True, "algorithm.leo.finetune_lr"),
        (AlgorithmConfig(name="leo", leo=LEOConfig(kl_weight=-1.0)), True, "algorithm.leo.kl_weight"),
        (AlgorithmConfig(name="leo", leo=LEOConfig(head="cosine")), True, "algorithm.leo.head"),
        (AlgorithmConfig(name="leo", leo=LEOConfig(feature_run="runs/no-such-run")), True, "algorithm.leo.feature_run"),
        (AlgorithmConfig(name="leo"), False, "algorithm.name"),
        (AlgorithmConfig(name="maml", leo=LEOConfig(latent_size=8)), True, "algorithm.leo"),
    ],
)
def test_settings_leo_cannot_run_are_refused_naming_the_field(settings, classification, field):
    with pytest.raises(ConfigError) as error:
        check_algorithm_settings(settings, classification, "omniglot" if classification else "sine")
    assert error.value.field == field
