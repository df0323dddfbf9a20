"""MAML (Finn et al., 2017): learn an initialisation that adapts in a few gradient steps.

Second order by default; `first_order=True` is first-order MAML, which treats
the inner gradients as constants (the paper's "first-order approximation").
"""

from __future__ import annotations

import torch

from distmeta.algorithms.base import MetaAlgorithm, Params
from distmeta.models import forward


class MAML(MetaAlgorithm):
    name = "maml"

    def adapt(self, meta_params: Params, support_x, support_y, steps: int, differentiable: bool) -> Params:
        def support_loss(params: Params) -> torch.Tensor:
            return self.loss(forward(self.model, params, support_x), support_y)

        start = self.model_parameters(meta_params)
        return self.inner_loop(meta_params, start, lambda step: support_loss, steps, differentiable)

    def predict(self, meta_params: Params, adapted: Params, x: torch.Tensor) -> torch.Tensor:
        return forward(self.model, adapted, x)


class FirstOrderMAML(MAML):
    name = "fomaml"

    def __init__(self, *args, **kwargs):
        kwargs["first_order"] = True
        super().__init__(*args, **kwargs)
