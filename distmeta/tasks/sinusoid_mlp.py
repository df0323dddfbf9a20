"""Sinusoid regression as an optimisee: the MAML MLP (1-40-40-1, ReLU) fitting one sinusoid.

A task is one sinusoid of the few-shot family (`distmeta.tasks.sinusoid`: y = A sin(x - phase),
A ~ U[0.1, 5], phase ~ U[0, pi], x ~ U[-5, 5]): task 0 of the counter-based stream keyed by
the task's seed, with `points` training points as its support set and `eval_points` held-out
points as its query set. Step t trains on training points t*B .. t*B + B - 1 (mean squared
error), cycling after `points`: fresh points at every step of an unroll of up to points / B
steps. What an evaluation reports (`full_loss`) is the MSE on the held-out points, fixed per task.

The optimisee is `distmeta.models.mlp.MLP` itself, called with a task's parameters
(`torch.func.functional_call`), drawn as `nn.Linear` draws its own: weights and biases
~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from the task's seed. Meta-train and meta-test tasks
differ by their seeds only (`split` picks nothing else): the sinusoids are a distribution,
not a data set to hold out. A wider MLP (`hidden_sizes=(80, 80)`) is the held-out variant.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.func import functional_call

from distmeta.models.mlp import MLP
from distmeta.tasks.optimisee import Params, TaskData, check_split
from distmeta.tasks.sinusoid import SinusoidTasks


class SinusoidMLPFamily:
    """The MLP 1 - hidden_sizes (ReLU) - 1 regressing one sinusoid per task, in minibatches."""

    def __init__(
        self,
        split: str = "train",
        hidden_sizes: tuple[int, ...] = (40, 40),
        batch_size: int = 10,
        points: int = 1000,
        eval_points: int = 100,
    ):
        check_split(split)
        if not hidden_sizes or min(hidden_sizes) < 1:
            raise ValueError(f"hidden_sizes must be one or more widths of at least 1, got {hidden_sizes}")
        if min(batch_size, points, eval_points) < 1:
            raise ValueError(
                f"batch_size, points and eval_points must be at least 1, got {batch_size}, {points}, {eval_points}"
            )
        self.split = split
        self.hidden_sizes = tuple(hidden_sizes)
        self.batch_size = min(batch_size, points)
        self.points = points
        self.sinusoids = SinusoidTasks(points, eval_points)
        # on the meta device: only its structure is used (every call passes a task's parameters),
        # and building it there draws nothing from torch's global generator
        with torch.device("meta"):
            self.model = MLP(1, self.hidden_sizes, 1)

    def init(self, seed: int) -> tuple[Params, TaskData]:
        generator = torch.Generator().manual_seed(seed)
        shapes = {name: value.shape for name, value in self.model.named_parameters()}
        params = {}
        for name, shape in shapes.items():
            fan_in = shapes[name.rsplit(".", 1)[0] + ".weight"][1]  # a bias's layer's inputs too
            bound = 1 / math.sqrt(fan_in)
            params[name] = (2 * torch.rand(shape, generator=generator) - 1) * bound
        sinusoid = self.sinusoids.sample(1, seed)
        task = {
            "inputs": sinusoid.support_x[0],
            "targets": sinusoid.support_y[0],
            "eval_inputs": sinusoid.query_x[0],
            "eval_targets": sinusoid.query_y[0],
        }
        return params, task

    def loss(self, params: Params, task: TaskData, step: torch.Tensor) -> torch.Tensor:
        # index arithmetic on tensors only, so that a batch of unrolls (vmap) each reads its own minibatch
        positions = (step * self.batch_size + torch.arange(self.batch_size)) % self.points
        inputs, targets = task["inputs"].index_select(0, positions), task["targets"].index_select(0, positions)
        return F.mse_loss(functional_call(self.model, params, (inputs,)), targets)

    def full_loss(self, params: Params, task: TaskData) -> torch.Tensor:
        return F.mse_loss(functional_call(self.model, params, (task["eval_inputs"],)), task["eval_targets"])
