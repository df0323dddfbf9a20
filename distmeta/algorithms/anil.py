"""ANIL (Raghu et al., 2020): MAML that adapts only the head ("almost no inner loop").

The features are computed once per set with the meta-parameters; only the
linear head takes inner steps. The body is still meta-learned through the
query loss, second order by default.
"""

from __future__ import annotations

import torch

from distmeta.algorithms.base import MetaAlgorithm, Params
from distmeta.models import features, head, part_names


class ANIL(MetaAlgorithm):
    name = "anil"

    def adapted_names(self, model_params: Params) -> list[str]:
        head_names = part_names(self.model, "head")
        return [name for name in model_params if name in head_names]

    def adapt(self, meta_params: Params, support_x, support_y, steps: int, differentiable: bool) -> Params:
        support_features = features(self.model, meta_params, support_x)

        def support_loss(head_params: Params) -> torch.Tensor:
            return self.loss(self._head(head_params, support_features), support_y)

        model_params = self.model_parameters(meta_params)
        start = {name: model_params[name] for name in self.adapted_names(model_params)}
        return self.inner_loop(meta_params, start, lambda step: support_loss, steps, differentiable)

    def predict(self, meta_params: Params, adapted: Params, x: torch.Tensor) -> torch.Tensor:
        return self._head(adapted, features(self.model, meta_params, x))

    def _head(self, head_params: Params, feature_values: torch.Tensor) -> torch.Tensor:
        return head(self.model, head_params, feature_values)
