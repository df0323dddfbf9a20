"""The Conv4 of MAML's Omniglot experiments.

Four blocks of [3x3 conv with `channels` filters, batch norm on the batch's own
statistics, ReLU, 2x2 max-pool], then a linear head. 28x28 inputs shrink to
14, 7, 3 and 1, so the head sees `channels` features.

Each block pools before its ReLU: max-pool and ReLU commute (ReLU is monotone), and ReLU, with
its backward and double backward, then runs on a quarter of the values. Outputs and gradients
are the same bit for bit (where a pooling window's maximum is negative, both orders give 0 with
gradient 0). Measured on a 2-core CPU, second-order MAML: about 10% off a Conv4 meta-step.

On the CPU under torch.autograd (the loop's threads, evaluation) the blocks compute in the
channels-last memory format, with batch norm in closed form (`cpu_batch_norm`). One thread, 25
images of 64 x 28 x 28: max-pooling takes 0.30 ms there against 6.82 ms on NCHW
(`benchmarks/cpu_kernels.py`). The values are the same (float64: the meta-gradient equal to
NCHW's to 1e-14); under vmap and torch.compile the blocks stay NCHW.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distmeta.models.cpu_batch_norm import batch_stat_norm
from distmeta.models.two_part import TwoPartModel


def _plain_autograd(x: torch.Tensor) -> bool:
    """A plain tensor, outside torch.func's transforms and torch.compile."""
    return not torch.compiler.is_compiling() and not torch._C._functorch.is_functorch_wrapped_tensor(x)


class BatchStatNorm(nn.Module):
    """Batch norm that always normalises with the current batch's statistics.

    Under torch.func's transforms (vmap, grad) it is written with basic ops: under
    `torch.func.vmap` the built-in `F.batch_norm(training=True)` gave a second-order
    meta-gradient about 1e-2 off the per-task loop, while basic ops match to 1e-15 in
    float64. Under torch.autograd it is fused: on a GPU the built-in one (on a CPU it made a
    second-order Conv4 meta-step about a quarter faster than basic ops); on the CPU
    `cpu_batch_norm.batch_stat_norm`, faster again and accurate on channels-last tensors (see
    that module). Both give the meta-gradient of basic ops to 1e-14 in float64.
    torch.compile traces the basic ops (what its measured figures are of).
    There are no running statistics, as in MAML: every task is normalised by
    its own support (or query) batch, at training and at test time alike.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._built_in_applies(x):
            if x.device.type == "cpu":
                return batch_stat_norm(x, self.weight, self.bias, self.eps)
            return F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=self.eps)
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        var = (x - mean).square().mean(dim=(0, 2, 3), keepdim=True)
        scale = self.weight.view(1, -1, 1, 1) * torch.rsqrt(var + self.eps)
        return (x - mean) * scale + self.bias.view(1, -1, 1, 1)

    @staticmethod
    def _built_in_applies(x: torch.Tensor) -> bool:
        """Plain autograd tensors, outside torch.compile, with more than one value per channel
        (the built-in refuses a single value, where basic ops give (x - mean) = 0)."""
        return _plain_autograd(x) and x.numel() > x.shape[1]


class ChannelsLastConv2d(nn.Conv2d):
    """`nn.Conv2d` that hands a plain CPU tensor on in channels-last memory format (see the
    module's docstring); every op after it keeps that format."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and x.device.type == "cpu" and _plain_autograd(x):
            x = channels_last(x)
        return super().forward(x)


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """`x` (N, C, H, W) in channels-last memory format, the same values.

    A tensor of one channel is contiguous in both formats, so `.contiguous(channels_last)`
    returns it as it is and the convolution then picks NCHW: its channels-last strides are
    set here instead, as a view of the same memory."""
    if x.shape[1] == 1 and x.is_contiguous():
        n, _, h, w = x.shape
        return x.as_strided(x.shape, (h * w, 1, w, 1))
    return x.contiguous(memory_format=torch.channels_last)


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        ChannelsLastConv2d(in_channels, out_channels, kernel_size=3, padding=1),
        BatchStatNorm(out_channels),
        nn.MaxPool2d(2),
        nn.ReLU(),
    )


class Conv4(TwoPartModel):
    """`features` (four conv blocks, flattened) then a linear `head` over the classes."""

    def __init__(self, in_channels: int = 1, channels: int = 64, out_features: int = 5, image_size: int = 28):
        super().__init__()
        self.features = nn.Sequential(
            conv_block(in_channels, channels),
            conv_block(channels, channels),
            conv_block(channels, channels),
            conv_block(channels, channels),
            nn.Flatten(),
        )
        side = image_size
        for _ in range(4):
            side //= 2
        self.feature_size = channels * side * side
        self.head = nn.Linear(self.feature_size, out_features)
