"""`TwoPartModel`: the shape every distmeta model has, `features` then a linear `head`."""

from __future__ import annotations

import torch
from torch import nn


class TwoPartModel(nn.Module):
    """head(features(x)): ANIL adapts the `head` alone and Prototypical Networks use the
    `features` alone, each by name in the model's parameter dict (`features.*`, `head.*`)."""

    features: nn.Sequential
    head: nn.Linear
    feature_size: int
    """The width of what `features` outputs: the head's input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
