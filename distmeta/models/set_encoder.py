"""A permutation-invariant encoder of a regression support set (Deep Sets; Zaheer et al., 2017).

Each (x, y) pair goes through the same small MLP; the mean over the set is the task
embedding, and a linear layer maps it to `out_features` numbers (MMAML's FiLM scales and
shifts). The mean (not a recurrent network, as in the MMAML authors' regression code) makes
the output independent of the order of the support points and is a plain batched op under vmap.
"""

from __future__ import annotations

import torch
from torch import nn


class SetEncoder(nn.Module):
    """(points, in_features) -> (out_features,): MLP per point, mean over points, linear."""

    def __init__(self, in_features: int, hidden: int, out_features: int):
        super().__init__()
        self.points = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.output = nn.Linear(hidden, out_features)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.output(self.points(pairs).mean(dim=0))
