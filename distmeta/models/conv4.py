"""The Conv4 of MAML's Omniglot experiments.

Four blocks of [3x3 conv with `channels` filters, batch norm on the batch's own
statistics, ReLU, 2x2 max-pool], then a linear head. 28x28 inputs shrink to
14, 7, 3 and 1, so the head sees `channels` features.

Each block pools before its ReLU: max-pool and ReLU commute (ReLU is monotone), and ReLU, with
its backward and double backward, then runs on a quarter of the values. Outputs and gradients
are the same bit for bit (where a pooling window's maximum is negative, both orders give 0 with
gradient 0). Measured on a 2-core CPU, second-order MAML: about 10% off a Conv4 meta-step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distmeta.models.two_part import TwoPartModel


class BatchStatNorm(nn.Module):
    """Batch norm that always normalises with the current batch's statistics.

    Under torch.func's transforms (vmap, grad) it is written with basic ops: under
    `torch.func.vmap` the built-in `F.batch_norm(training=True)` gave a second-order
    meta-gradient about 1e-2 off the per-task loop, while basic ops match to 1e-15 in
    float64. Under torch.autograd (the loop's threads, evaluation) it is the built-in one,
    whose fused kernels and double backward make a second-order Conv4 meta-step on CPU
    about a quarter faster, with the meta-gradient equal to basic ops' to 1e-14 in float64.
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
            return F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=self.eps)
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        var = (x - mean).square().mean(dim=(0, 2, 3), keepdim=True)
        scale = self.weight.view(1, -1, 1, 1) * torch.rsqrt(var + self.eps)
        return (x - mean) * scale + self.bias.view(1, -1, 1, 1)

    @staticmethod
    def _built_in_applies(x: torch.Tensor) -> bool:
        """Plain autograd tensors, outside torch.compile, with more than one value per channel
        (the built-in refuses a single value, where basic ops give (x - mean) = 0)."""
        if torch.compiler.is_compiling() or torch._C._functorch.is_functorch_wrapped_tensor(x):
            return False
        return x.numel() > x.shape[1]


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
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
