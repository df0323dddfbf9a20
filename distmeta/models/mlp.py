"""The MLP of the MAML sinusoid experiments (1-40-40-1, ReLU)."""

from __future__ import annotations

from torch import nn

from distmeta.models.two_part import TwoPartModel


class MLP(TwoPartModel):
    """`features` (hidden layers) then a linear `head`; ANIL adapts only the head."""

    def __init__(self, in_features: int = 1, hidden_sizes: tuple[int, ...] = (40, 40), out_features: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, out_features)
        self.feature_size = width
