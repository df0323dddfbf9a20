"""Reptile (Nichol, Achiam, Schulman, 2018): move the initialisation towards adapted weights.

The meta-gradient of a task is (theta - phi), where phi is theta after
`inner_steps` SGD steps on the support set; with plain SGD as meta-optimiser at
rate eps this is exactly theta <- theta + eps * mean(phi - theta).
The query loss after adaptation is reported, but not differentiated.

With `inner_batch_size`, each inner step sees its own minibatch of the support
set, as in the paper. This matters: on one batch seen k times, Reptile's update
only adds a term that flattens the loss on that batch, while different
minibatches add the term that rewards what one batch teaches about another (the
paper's AvgGradInner, the term MAML follows), which is what learns to learn.
"""

from __future__ import annotations

import torch

from distmeta.algorithms.base import Params
from distmeta.algorithms.estimators import MetaGradientEstimator, ReptileDifference
from distmeta.algorithms.maml import MAML
from distmeta.errors import ConfigError
from distmeta.models import forward


def minibatch_indices(support_size: int, batch_size: int, device: torch.device) -> list[torch.Tensor | None]:
    """The support examples of each inner step's minibatch, steps cycling through the list.

    The examples are taken in an interleaved order, every m-th from 0, then every m-th from 1,
    and so on (m = ceil(support_size / batch_size) minibatches), and cut into minibatches of
    `batch_size`, the last one wrapping round to the start: as tasks list their support class by
    class, each minibatch draws from every class alike, and every example is in a minibatch
    (a remainder left out would be the last class: never seen). When `batch_size` divides the
    set, minibatch i is every m-th example from i. A fixed choice rather than a random one, so
    that a task's update is a function of the task alone (and vmap needs no randomness).
    None: the whole set.
    """
    if batch_size <= 0 or batch_size >= support_size:
        return [None]
    batches = -(-support_size // batch_size)
    order = torch.cat([torch.arange(first, support_size, batches) for first in range(batches)])
    return [
        order[(start + torch.arange(batch_size)) % support_size].to(device)
        for start in range(0, support_size, batch_size)
    ]


class Reptile(MAML):
    name = "reptile"
    own_settings = {"inner_batch_size": "adapts on minibatches of the support set"}

    def __init__(self, *args, inner_batch_size: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.inner_batch_size = inner_batch_size

    @classmethod
    def extra_arguments(cls, settings, output_size: int) -> dict:
        return {"inner_batch_size": settings.inner_batch_size}

    @classmethod
    def check_settings(cls, settings, is_classification: bool, task_name: str) -> None:
        if settings.inner_steps < 1:
            raise ConfigError("algorithm.inner_steps", "reptile needs at least one inner step")
        if settings.inner_batch_size < 0:
            raise ConfigError("algorithm.inner_batch_size", f"must be zero or more, got {settings.inner_batch_size}")

    def default_estimator(self) -> MetaGradientEstimator:
        return ReptileDifference()

    def training_adaptation(self, meta_params: Params, support_x, support_y) -> Params:
        return self.adapt_on_minibatches(meta_params, support_x, support_y, self.inner_steps)

    def adapt_on_minibatches(self, meta_params: Params, support_x, support_y, steps: int) -> Params:
        """Meta-training's adaptation: inner step s on minibatch s mod m of the support set."""
        batches = minibatch_indices(support_x.shape[0], self.inner_batch_size, support_x.device)
        if batches[0] is None:  # the whole support set
            return self.adapt(meta_params, support_x, support_y, steps, differentiable=False)

        def minibatch_loss(step: int):
            rows = batches[step % len(batches)]
            return lambda params: self.loss(forward(self.model, params, support_x[rows]), support_y[rows])

        start = self.model_parameters(meta_params)
        return self.inner_loop(meta_params, start, minibatch_loss, steps, differentiable=False)
