"""Meta-SGD (Li et al., 2017): MAML with a learned learning rate per parameter entry.

The meta-parameters are the model's parameters plus, for each of them, a
tensor of the same shape named `inner_lr.<name>`, initialised to `inner_lr`
and meta-learned along with the weights.
"""

from __future__ import annotations

import torch

from distmeta.algorithms.base import MetaAlgorithm, Params
from distmeta.models import forward, sub_params

RATE_PREFIX = "inner_lr"


class MetaSGD(MetaAlgorithm):
    name = "metasgd"

    def init_meta_parameters(self, model_params: Params) -> Params:
        rates = {f"{RATE_PREFIX}.{name}": torch.full_like(value, self.inner_lr) for name, value in model_params.items()}
        return {**model_params, **rates}

    def model_parameters(self, meta_params: Params) -> Params:
        return {name: value for name, value in meta_params.items() if not name.startswith(RATE_PREFIX + ".")}

    def adapt(self, meta_params: Params, support_x, support_y, steps: int, differentiable: bool) -> Params:
        def support_loss(params: Params) -> torch.Tensor:
            return self.loss(forward(self.model, params, support_x), support_y)

        rates = sub_params(meta_params, RATE_PREFIX)
        return self.inner_loop(support_loss, self.model_parameters(meta_params), rates, steps, differentiable)

    def predict(self, meta_params: Params, adapted: Params, x: torch.Tensor) -> torch.Tensor:
        return forward(self.model, adapted, x)
