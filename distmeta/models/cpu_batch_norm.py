"""Batch norm on the batch's own statistics, with closed-form first and second derivatives, for
the CPU under torch.autograd (the loop's threads, evaluation).

Why not `F.batch_norm` there (`python benchmarks/cpu_kernels.py`, a 2-core Zen 4 CPU, one
thread, a Conv4 block's output of 25 images, 25 x 64 x 28 x 28):
- on channels-last tensors, where a Conv4's max-pooling is fastest on a CPU (0.30 ms against
  6.82 ms on NCHW), it loses accuracy in float32: a second-order Conv4 meta-gradient came out
  1.3e-3 off float64 (relative, by norm), against 7.9e-7 for NCHW and 1.4e-6 for this module,
  whose sums are torch's own (`Tensor.sum`);
- its double backward (a composite of many small ops) takes 28.0 ms on NCHW, the closed form
  below 16.1 ms on channels-last, and second-order MAML differentiates every support-set batch
  norm twice.

Both functions are checked against `F.batch_norm` and by gradcheck / gradgradcheck in float64
(tests/models/test_cpu_batch_norm.py). Pure torch, no running statistics (as in MAML).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


def batch_stat_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """`F.batch_norm(x, None, None, weight, bias, training=True, eps=eps)` for a 4-D `x`, in
    either memory format (the output keeps `x`'s)."""
    return _BatchStatNorm.apply(x, weight, bias, eps)


def _per_channel(t: torch.Tensor) -> torch.Tensor:
    return t.view(1, -1, 1, 1)


def _channel_sums(t: torch.Tensor) -> torch.Tensor:
    return t.sum(dim=(0, 2, 3))


class _BatchStatNorm(torch.autograd.Function):
    """y = weight * x_hat + bias, x_hat = (x - mean) * invstd, per channel over (N, H, W)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        n = x.numel() // x.shape[1]
        mean = _channel_sums(x) / n
        x_hat = x - _per_channel(mean)
        invstd = torch.rsqrt(_channel_sums(x_hat.square()) / n + eps)
        x_hat.mul_(_per_channel(invstd))
        ctx.save_for_backward(x, weight, x_hat, invstd)
        return (x_hat * _per_channel(weight)).add_(_per_channel(bias))

    @staticmethod
    def backward(ctx, grad_y):
        x, weight, x_hat, invstd = ctx.saved_tensors
        # A Function of its own, so that second-order MAML can differentiate it (in closed form)
        grad_x, grad_weight, grad_bias = _BatchStatNormBackward.apply(grad_y, x, weight, x_hat, invstd)
        return grad_x, grad_weight, grad_bias, None


class _BatchStatNormBackward(torch.autograd.Function):
    """(grad_y, x, weight) -> (grad_x, grad_weight, grad_bias) of `_BatchStatNorm`.

    With S[.] a channel's sum over its n values, gb = S[gy], gw = S[gy x_hat] and
    gx = weight invstd (gy - gb/n - x_hat gw/n). `x` is an input only for autograd: mean and
    invstd are functions of it, which `backward` differentiates through; its values come in
    as `x_hat` and `invstd`.
    """

    @staticmethod
    def forward(ctx, grad_y, x, weight, x_hat, invstd):
        n = x_hat.numel() // x_hat.shape[1]
        grad_bias = _channel_sums(grad_y)
        grad_weight = _channel_sums(grad_y * x_hat)
        scale = weight * invstd
        grad_x = grad_y * _per_channel(scale)
        grad_x.addcmul_(x_hat, _per_channel(-scale * grad_weight / n)).sub_(_per_channel(scale * grad_bias / n))
        ctx.save_for_backward(grad_y, weight, x_hat, invstd, grad_bias, grad_weight)
        return grad_x, grad_weight, grad_bias

    @staticmethod
    @once_differentiable
    def backward(ctx, gg_x, gg_weight, gg_bias):
        """The derivatives of <gg_x, gx> + <gg_weight, gw> + <gg_bias, gb>, with A = S[gg_x gy] -
        gb S[gg_x]/n and B = S[gg_x x_hat]:
        - by gy: gg_bias + gg_weight x_hat + weight invstd (gg_x - S[gg_x]/n - x_hat B/n);
        - by x: gg_weight invstd (gy - gb/n - x_hat gw/n)
          + weight invstd^2 / n [x_hat (3 gw B/n - A) - B (gy - gb/n) - gw (gg_x - S[gg_x]/n)];
        - by weight: invstd (A - gw B/n).
        (x_hat's own derivative, invstd (I - 1/n - x_hat x_hat^T / n), gives the x terms.)
        """
        grad_y, weight, x_hat, invstd, grad_bias, grad_weight = ctx.saved_tensors
        n = x_hat.numel() // x_hat.shape[1]
        zero = torch.zeros_like(weight)
        # d_x = gy * k_gy + x_hat * k_x_hat + gg_x * k_gg_x + k_const, each k per channel
        k_gy, k_x_hat, k_gg_x, k_const = zero, zero, zero, zero
        d_grad_y, d_weight = None, zero
        if gg_weight is not None:
            c = gg_weight * invstd
            k_gy, k_x_hat, k_const = c, -c * grad_weight / n, -c * grad_bias / n
            d_grad_y = x_hat * _per_channel(gg_weight)
        if gg_x is not None:
            sum_gg_x = _channel_sums(gg_x)
            a = _channel_sums(gg_x * grad_y) - grad_bias * sum_gg_x / n
            b = _channel_sums(gg_x * x_hat)
            scale = weight * invstd
            from_gg_x = gg_x * _per_channel(scale)
            from_gg_x.addcmul_(x_hat, _per_channel(-scale * b / n)).sub_(_per_channel(scale * sum_gg_x / n))
            d_grad_y = from_gg_x if d_grad_y is None else d_grad_y.add_(from_gg_x)
            c = weight * invstd.square() / n
            k_x_hat = k_x_hat + c * (3 * grad_weight * b / n - a)
            k_gy = k_gy - c * b
            k_gg_x = -c * grad_weight
            k_const = k_const + c * (b * grad_bias + grad_weight * sum_gg_x) / n
            d_weight = invstd * (a - grad_weight * b / n)
        if gg_bias is not None:
            d_grad_y = torch.zeros_like(grad_y) if d_grad_y is None else d_grad_y
            d_grad_y.add_(_per_channel(gg_bias))
        d_x = grad_y * _per_channel(k_gy)
        d_x.addcmul_(x_hat, _per_channel(k_x_hat)).add_(_per_channel(k_const))
        if gg_x is not None:
            d_x.addcmul_(gg_x, _per_channel(k_gg_x))
        return d_grad_y, d_x, d_weight, None, None
