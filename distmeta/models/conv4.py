"""The Conv4 of MAML's Omniglot experiments.

Four blocks of [3x3 conv with `channels` filters, batch norm on the batch's own
statistics, ReLU, 2x2 max-pool], then a linear head. 28x28 inputs shrink to
14, 7, 3 and 1, so the head sees `channels` features.
"""

from __future__ import annotations

import torch
from torch import nn

from distmeta.models.two_part import TwoPartModel


class BatchStatNorm(nn.Module):
    """Batch norm that always normalises with the current batch's statistics.

    Written with basic ops rather than `F.batch_norm(training=True)`: under
    `torch.func.vmap` the built-in one gave a second-order meta-gradient about
    1e-2 off the per-task loop, while this one matches to 1e-15 in float64.
    There are no running statistics, as in MAML: every task is normalised by
    its own support (or query) batch, at training and at test time alike.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        var = (x - mean).square().mean(dim=(0, 2, 3), keepdim=True)
        scale = self.weight.view(1, -1, 1, 1) * torch.rsqrt(var + self.eps)
        return (x - mean) * scale + self.bias.view(1, -1, 1, 1)


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        BatchStatNorm(out_channels),
        nn.ReLU(),
        nn.MaxPool2d(2),
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
