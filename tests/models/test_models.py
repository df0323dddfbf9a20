"""Models: the paper's shapes, functional calls, and a batch norm equal to PyTorch's."""

import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

from distmeta.config import load_config
from distmeta.models import MLP, Conv4, build_model, features, forward, initial_parameters
from distmeta.models.conv4 import BatchStatNorm


def test_mlp_is_1_40_40_1_by_default():
    model = build_model(load_config(), 1)
    shapes = {k: tuple(v.shape) for k, v in initial_parameters(model, 0).items()}
    assert shapes == {
        "features.0.weight": (40, 1),
        "features.0.bias": (40,),
        "features.2.weight": (40, 40),
        "features.2.bias": (40,),
        "head.weight": (1, 40),
        "head.bias": (1,),
    }


def test_conv4_maps_28x28_images_to_64_features_and_ways_logits():
    model = Conv4(1, 64, 5, 28)
    params = initial_parameters(model, 0)
    x = torch.rand(7, 1, 28, 28)
    assert features(model, params, x).shape == (7, 64)
    assert forward(model, params, x).shape == (7, 5)
    # conv 640 + 3 x 36,928, batch norm 4 x 128, head 64 x 5 + 5
    assert sum(v.numel() for v in params.values()) == 112261


def test_batch_stat_norm_equals_pytorch_batch_norm_on_batch_statistics():
    norm = BatchStatNorm(3).double()
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
        norm.bias.copy_(torch.tensor([0.0, 1.0, -1.0]))
    x = torch.randn(6, 3, 5, 5, dtype=torch.float64)
    expected = F.batch_norm(x, None, None, norm.weight, norm.bias, training=True, eps=norm.eps)
    torch.testing.assert_close(norm(x), expected)
    torch.testing.assert_close(vmap(norm)(x.unsqueeze(0))[0], expected)  # the basic ops torch.func runs


def test_batch_stat_norm_has_the_same_second_order_gradient_under_autograd_and_torch_func():
    norm = BatchStatNorm(3).double()
    params = {"weight": torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64), "bias": torch.zeros(3).double()}
    x = torch.randn(6, 3, 5, 5, dtype=torch.float64)
    target = torch.randn(6, 3, 5, 5, dtype=torch.float64)

    def inner_step_loss(p, x):  # one SGD step on a loss of the output, then that loss again
        loss = lambda q: (functional_call(norm, q, (x,)) - target).square().mean()  # noqa: E731
        grads = torch.autograd.grad(loss(p), list(p.values()), create_graph=True)
        return loss({name: value - 0.5 * g for (name, value), g in zip(p.items(), grads)})

    leaves = {name: value.clone().requires_grad_(True) for name, value in params.items()}
    by_autograd = torch.autograd.grad(inner_step_loss(leaves, x), list(leaves.values()))
    by_vmap = vmap(torch.func.grad(lambda p, x: inner_step_loss(p, x)), in_dims=(None, 0))(params, x.unsqueeze(0))
    for name, expected in zip(params, by_autograd):
        torch.testing.assert_close(by_vmap[name][0], expected, rtol=1e-10, atol=1e-12)


def test_initial_parameters_depend_on_the_seed_only():
    model = MLP()
    state = torch.random.get_rng_state()
    a, b, c = initial_parameters(model, 1), initial_parameters(model, 1), initial_parameters(model, 2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["head.weight"], c["head.weight"])
    assert torch.equal(state, torch.random.get_rng_state())
