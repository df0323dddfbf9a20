"""Proto-MAML (Triantafillou et al., 2020, Meta-Dataset): MAML whose head starts at the prototypes.

The linear head is not meta-learned: for each task it is generated from the support
set's class prototypes c_k (mean embeddings), W_k = 2 c_k and b_k = -||c_k||^2, which
makes its logits those of Prototypical Networks up to a term the same for every class
(-||e||^2 of the query's own embedding), so the same predictions. Then the whole network
(embedding and head) takes MAML's inner steps from there. The embedding is meta-learned
through the query loss, along the prototypes' path into the head too; second order
unless `first_order` (Meta-Dataset's fo-Proto-MAML). Works for any number of ways.
"""

from __future__ import annotations

import torch

from distmeta.algorithms.base import Params
from distmeta.algorithms.protonet import PrototypeClassifier, class_prototypes
from distmeta.models import features, forward


class ProtoMAML(PrototypeClassifier):
    name = "protomaml"

    def prototype_head(self, meta_params: Params, support_x, support_y) -> Params:
        """The head the prototypes give: W = 2 c_k, b = -||c_k||^2."""
        prototypes = class_prototypes(features(self.model, meta_params, support_x), support_y, self.ways)
        return {"head.weight": 2 * prototypes, "head.bias": -prototypes.square().sum(dim=1)}

    def adapt(self, meta_params: Params, support_x, support_y, steps: int, differentiable: bool) -> Params:
        def support_loss(params: Params) -> torch.Tensor:
            return self.loss(forward(self.model, params, support_x), support_y)

        start = {**self.model_parameters(meta_params), **self.prototype_head(meta_params, support_x, support_y)}
        return self.inner_loop(meta_params, start, lambda step: support_loss, steps, differentiable)

    def predict(self, meta_params: Params, adapted: Params, x: torch.Tensor) -> torch.Tensor:
        return forward(self.model, adapted, x)
