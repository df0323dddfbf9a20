"""The CPU batch norm with closed-form derivatives, and the channels-last Conv4 it serves."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

from distmeta.models import Conv4, initial_parameters
from distmeta.models.cpu_batch_norm import batch_stat_norm

FORMATS = [torch.contiguous_format, torch.channels_last]


def _inputs(memory_format, dtype=torch.float64, mean=1.0, std=0.5, shape=(4, 3, 5, 5)):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(*shape, generator=g, dtype=dtype) * std + mean).contiguous(memory_format=memory_format)
    weight = torch.rand(shape[1], generator=g, dtype=dtype) + 0.5
    bias = torch.randn(shape[1], generator=g, dtype=dtype)
    return [t.requires_grad_() for t in (x, weight, bias)]


@pytest.mark.parametrize("memory_format", FORMATS)
def test_values_gradients_and_second_derivatives_equal_pytorch_batch_norm(memory_format):
    x, weight, bias = _inputs(memory_format)
    ours = batch_stat_norm(x, weight, bias, 1e-5)
    theirs = F.batch_norm(x, None, None, weight, bias, training=True, eps=1e-5)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    assert ours.is_contiguous(memory_format=memory_format)

    g = torch.randn_like(theirs).requires_grad_()  # second derivatives by it too
    first = [torch.autograd.grad(y, (x, weight, bias), g, create_graph=True) for y in (ours, theirs)]
    for a, b in zip(*first):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)

    # second derivatives through each first derivative alone, then through all three together
    directions = [torch.randn_like(t) for t in first[1]]
    for used in ([0], [1], [2], [0, 1, 2]):
        second = [
            torch.autograd.grad(
                sum((grads[i] * directions[i]).sum() for i in used),
                (x, weight, g),
                allow_unused=True,
                retain_graph=True,
            )
            for grads in first
        ]
        for a, b in zip(*second):
            if b is None or not b.abs().sum():
                assert a is None or not a.abs().sum()
                continue
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_gradcheck_and_gradgradcheck_pass():
    x, weight, bias = _inputs(torch.contiguous_format, shape=(3, 2, 3, 3))
    function = lambda x, w, b: batch_stat_norm(x, w, b, 1e-5)  # noqa: E731
    assert torch.autograd.gradcheck(function, (x, weight, bias))
    assert torch.autograd.gradgradcheck(function, (x, weight, bias))


def test_float32_on_channels_last_stays_as_accurate_as_on_nchw():
    """Conv outputs whose mean is far from zero next to their spread: a channel's values summed
    one after another in float32 lose digits; this module's sums keep float32's accuracy."""
    x64, weight64, bias64 = _inputs(torch.contiguous_format, mean=3.0, std=0.1, shape=(25, 8, 28, 28))
    truth = batch_stat_norm(x64, weight64, bias64, 1e-5)
    g64 = torch.randn_like(truth)
    true_grads = torch.autograd.grad(truth, (x64, weight64, bias64), g64)
    for memory_format in FORMATS:
        x = x64.detach().float().contiguous(memory_format=memory_format).requires_grad_()
        weight, bias = (t.detach().float().requires_grad_() for t in (weight64, bias64))
        y = batch_stat_norm(x, weight, bias, 1e-5)
        grads = torch.autograd.grad(y, (x, weight, bias), g64.float().contiguous(memory_format=memory_format))
        for got, want in zip((y, *grads), (truth, *true_grads)):
            assert ((got.double() - want).norm() / want.norm()).item() < 1e-5, memory_format


def _block_output_formats(model: Conv4, run) -> list[str]:
    formats = []

    def record(module, inputs, out):
        if torch._C._functorch.is_functorch_wrapped_tensor(out):  # under vmap: its batched value
            formats.append("nchw" if torch._C._functorch.get_unwrapped(out).is_contiguous() else "other")
        else:
            formats.append("channels last" if out.is_contiguous(memory_format=torch.channels_last) else "nchw")

    hooks = [block[0].register_forward_hook(record) for block in list(model.features)[:4]]
    run()
    for hook in hooks:
        hook.remove()
    return formats


def test_conv4_computes_channels_last_under_autograd_on_the_cpu_and_nchw_under_vmap():
    model = Conv4(1, 4, 3, 28).double()
    params = initial_parameters(model, 0)
    x = torch.rand(5, 1, 28, 28, dtype=torch.float64)
    assert _block_output_formats(model, lambda: functional_call(model, params, (x,))) == ["channels last"] * 4
    batched = lambda: vmap(lambda x: functional_call(model, params, (x,)))(x[None])  # noqa: E731
    assert _block_output_formats(model, batched) == ["nchw"] * 4


def test_conv4_second_order_gradient_is_the_same_in_channels_last_and_under_vmap():
    model = Conv4(1, 4, 3, 28).double()
    params = initial_parameters(model, 0)
    g = torch.Generator().manual_seed(1)
    support, query = (
        torch.rand(3, 1, 28, 28, generator=g, dtype=torch.float64),
        torch.rand(6, 1, 28, 28, generator=g, dtype=torch.float64),
    )
    labels_s, labels_q = torch.arange(3), torch.arange(3).repeat(2)

    def meta_loss(p, support, query):
        loss = lambda q, x, y: F.cross_entropy(functional_call(model, q, (x,)), y)  # noqa: E731
        grads = torch.autograd.grad(loss(p, support, labels_s), list(p.values()), create_graph=True)
        return loss({name: value - 0.4 * gr for (name, value), gr in zip(p.items(), grads)}, query, labels_q)

    leaves = {name: value.clone().requires_grad_() for name, value in params.items()}
    by_autograd = dict(zip(leaves, torch.autograd.grad(meta_loss(leaves, support, query), list(leaves.values()))))
    by_vmap = vmap(torch.func.grad(meta_loss), in_dims=(None, 0, 0))(params, support[None], query[None])
    for name, expected in by_autograd.items():
        torch.testing.assert_close(by_vmap[name][0], expected, rtol=1e-9, atol=1e-12, msg=name)
