"""MMAML on images: a convolutional encoder of the support images modulates Conv4's channels."""

import pytest
import torch

import distmeta
from distmeta.config import load_config
from distmeta.errors import ConfigError
from distmeta.execution import batch_evaluation, batch_meta_gradient
from distmeta.models import Conv4
from distmeta.training.trainer import train
from tests.algorithms.test_task_conditioned import one_task, perturbed, small_conv4, small_images
from tests.conftest import TINY_SYNTHETIC_OMNIGLOT, make_algorithm, meta_params_for

TINY_OMNIGLOT = [
    *TINY_SYNTHETIC_OMNIGLOT,
    "algorithm.name=mmaml",
    "algorithm.inner_steps=1",
    "algorithm.test_inner_steps=1",
    "train.meta_batch_size=2",
    "train.log_every=2",
    "train.val_every=2",
    "train.val_tasks=3",
    "train.checkpoint_every=2",
]


def without_modulation(params):
    """The encoder's last layer at zero: every scale 1 + 0 and shift 0, the unmodulated Conv4."""
    return {k: torch.zeros_like(v) if k.startswith("encoder.output.") else v for k, v in params.items()}


def test_the_encoder_modulates_each_conv4_channel_by_the_support_images_alone():
    model = small_conv4()
    mmaml = make_algorithm("mmaml", model, True, 3)
    params = meta_params_for(mmaml, model)
    batch = small_images(tasks=3, shots=2)
    film = torch.stack([mmaml.task_conditioning(params, *one_task(batch, i)[:2]) for i in range(3)])
    assert film.shape == (3, 2 * 4 * 4)  # a scale and a shift per channel of each of the 4 blocks
    assert film.std(0).mean() > 0 and film.abs().max() < 1.0
    support_x, support_y = one_task(batch)[:2]
    reordered = torch.randperm(6)
    torch.testing.assert_close(mmaml.task_conditioning(params, support_x[reordered], support_y), film[0])
    # the labels are not read: the same images under other labels get the same modulation
    torch.testing.assert_close(mmaml.task_conditioning(params, support_x, support_y.flip(0)), film[0])


def test_the_second_order_image_meta_gradient_matches_finite_differences():
    # one entry of a few tensors, along every path: the encoder's first convolution (through all of
    # it), its per-image and output layers, the first block's convolution (through every block), the head
    model = small_conv4()
    mmaml = make_algorithm("mmaml", model, True, 3, inner_steps=2)
    params = perturbed(meta_params_for(mmaml, model))
    task = one_task(small_images(tasks=1, shots=2))
    grads, _, _ = mmaml.task_meta_gradient(params, *task)
    checked = [
        "encoder.convolutions.0.weight",
        "encoder.images.0.bias",
        "encoder.output.weight",
        "features.0.0.weight",
        "head.weight",
    ]
    eps = 1e-6
    for name in checked:
        value, index = params[name], params[name].numel() // 2

        def loss_at(delta):
            moved = value.clone().reshape(-1)
            moved[index] += delta
            # the loss alone: no graph of the inner gradients is needed for its value
            loss, _ = mmaml.query_loss({**params, name: moved.reshape(value.shape)}, *task, differentiable=False)
            return loss.item()

        numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
        assert grads[name].reshape(-1)[index].item() == pytest.approx(numeric, rel=1e-4, abs=1e-8), name


@pytest.mark.parametrize("first_order", [False, True])
def test_with_the_encoder_output_at_zero_the_conv4_gradient_is_maml_s(first_order):
    model = small_conv4()
    mmaml = make_algorithm("mmaml", model, True, 3, first_order=first_order)
    maml = make_algorithm("maml", model, True, 3, first_order=first_order)
    params = without_modulation(perturbed(meta_params_for(mmaml, model)))
    task = one_task(small_images(tasks=1, shots=2))
    ours, ours_loss, _ = mmaml.task_meta_gradient(params, *task)
    theirs, theirs_loss, _ = maml.task_meta_gradient(mmaml.model_parameters(params), *task)
    torch.testing.assert_close(ours_loss, theirs_loss, rtol=1e-12, atol=0)
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-10, atol=1e-13, msg=key)
    # the encoder learns its way off the identity: its last layer gets a gradient
    assert ours["encoder.output.weight"].abs().sum() > 0


def test_vmap_and_the_loop_s_threads_give_equal_image_meta_gradients_and_evaluations():
    # The module's own weights are float32, the meta-parameters float64: a thread that ran a shared
    # encoder or batch norm while another restored its weights would mix the two and fail.
    model = Conv4(1, 4, 3, 16)
    mmaml = make_algorithm("mmaml", model, True, 3)
    params = {name: value.double() for name, value in perturbed(meta_params_for(mmaml, model)).items()}
    batch = small_images(tasks=4)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the loop shares the tasks among as many threads
    try:
        looped = batch_meta_gradient(mmaml, params, batch, "loop")
        looped_evaluation = batch_evaluation(mmaml, params, batch, 2, "loop")
    finally:
        torch.set_num_threads(threads)
    vmapped = batch_meta_gradient(mmaml, params, batch, "vmap")
    for key in params:
        torch.testing.assert_close(vmapped.grad_sum[key], looped.grad_sum[key], rtol=1e-5, atol=1e-10, msg=key)
        assert vmapped.grad_sum[key].abs().sum() > 0, key
    vmapped_evaluation = batch_evaluation(mmaml, params, batch, 2, "vmap")
    torch.testing.assert_close(vmapped_evaluation, looped_evaluation, rtol=1e-5, atol=1e-12)


def test_mmaml_on_images_configured_with_an_mlp_is_refused_naming_the_model():
    on_images = ["task.name=omniglot", "task.omniglot.synthetic=true", "algorithm.name=mmaml"]
    assert load_config(None, on_images).model_name == "conv4"
    with pytest.raises(ConfigError) as error:
        load_config(None, [*on_images, "model.name=mlp"])
    assert error.value.field == "model.name"


def test_an_omniglot_run_records_the_film_spread_resumes_and_adapts_to_any_number_of_ways(tmp_path):
    def run(run_dir, steps):
        config = load_config(None, [*TINY_OMNIGLOT, f"train.run_dir={run_dir}", f"train.steps={steps}"])
        return train(config, print_fn=lambda *_: None, final_eval=False)

    run(tmp_path, 2)
    resumed, whole = run(tmp_path, 4), run(tmp_path / "whole", 4)
    assert resumed.steps == whole.steps == 4
    assert any(name.startswith("encoder.convolutions.") for name in whole.meta_params)
    for name in whole.meta_params:
        torch.testing.assert_close(resumed.meta_params[name], whole.meta_params[name])
    records = [line for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if "val_accuracy" in line]
    assert records and all("val_conditioning_std" in line for line in records)
    learner = distmeta.load(tmp_path)
    torch.manual_seed(0)
    support_x = torch.rand(5, 1, 16, 16)  # trained for 3 ways, adapted to 5
    labels = ["a", "b", "c", "d", "e"]
    adapted = learner.adapt(support_x, labels, steps=2)
    assert adapted.outputs(support_x).shape == (5, 5) and set(adapted.predict(support_x)) <= set(labels)
