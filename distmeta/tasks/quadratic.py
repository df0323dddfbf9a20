"""Quadratic optimisees, the first experiment of Andrychowicz et al. (2016):

    f(theta) = mean over a batch of functions of || W theta - y ||^2,

with W (d x d) and y (d) drawn from N(0, 1) for each function of the batch (10 dimensions, 128
functions) and theta ~ N(0, 0.01^2) at the start. `entries="uniform"` draws W and y from
U[0, 1] instead, exactly learning-to-learn's `quadratic` problem (the one its public
reproductions report on). No minibatches: every step sees the same loss. A task is drawn on the
CPU and then moved to `device`, so that a seed is the same task on any device.
"""

from __future__ import annotations

import torch

from distmeta.tasks.optimisee import Params, TaskData

ENTRIES = ("normal", "uniform")


class QuadraticFamily:
    """Batches of random 10-d least-squares problems; `split` only picks the seed stream."""

    def __init__(
        self,
        split: str = "train",
        dimensions: int = 10,
        functions: int = 128,
        init_std: float = 0.01,
        entries: str = "normal",
        device: torch.device | str = "cpu",
    ):
        if dimensions < 1 or functions < 1:
            raise ValueError(f"dimensions and functions must be at least 1, got {dimensions}, {functions}")
        if entries not in ENTRIES:
            raise ValueError(f"entries must be one of {ENTRIES}, got {entries!r}")
        self.entries = entries
        self.split = split
        self.dimensions = dimensions
        self.functions = functions
        self.init_std = init_std
        self.device = torch.device(device)

    def init(self, seed: int) -> tuple[Params, TaskData]:
        generator = torch.Generator().manual_seed(seed)
        n, d = self.functions, self.dimensions
        draw = torch.randn if self.entries == "normal" else torch.rand
        matrix = draw(n, d, d, generator=generator)
        target = draw(n, d, generator=generator)
        theta = self.init_std * torch.randn(n, d, generator=generator)
        return {"theta": theta.to(self.device)}, {"matrix": matrix.to(self.device), "target": target.to(self.device)}

    def loss(self, params: Params, task: TaskData, step: torch.Tensor) -> torch.Tensor:
        return self.full_loss(params, task)

    def full_loss(self, params: Params, task: TaskData) -> torch.Tensor:
        residual = (task["matrix"] @ params["theta"].unsqueeze(-1)).squeeze(-1) - task["target"]
        return residual.square().sum(-1).mean()
