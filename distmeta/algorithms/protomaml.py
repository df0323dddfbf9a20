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

from distmeta.algorithms.base import MetaAlgorithm, Params
from distmeta.errors import ConfigError
from distmeta.models import features, forward, part_names


def class_prototypes(embeddings: torch.Tensor, labels: torch.Tensor, ways: int) -> torch.Tensor:
    """(ways, features): the mean embedding of each class's examples."""
    # a comparison rather than F.one_hot, which checks label values and so cannot run under vmap
    classes = torch.arange(ways, device=labels.device)
    membership = (labels.unsqueeze(1) == classes).to(embeddings.dtype)
    counts = membership.sum(dim=0).clamp(min=1).unsqueeze(1)
    return membership.T @ embeddings / counts


class ProtoMAML(MetaAlgorithm):
    name = "protomaml"

    def __init__(self, *args, ways: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.ways = ways

    @classmethod
    def from_settings(cls, settings, model, is_classification: bool, output_size: int) -> ProtoMAML:
        return cls(model, is_classification, settings.inner_lr, settings.inner_steps, settings.test_inner_steps,
                   first_order=settings.first_order, ways=output_size)

    @classmethod
    def check_settings(cls, settings, is_classification: bool, task_name: str) -> None:
        if not is_classification:
            raise ConfigError("algorithm.name", f"protomaml classifies; task {task_name} is a regression")

    def learned_model_parameters(self, model_params: Params) -> Params:
        """The embedding alone: the head is made from each task's prototypes."""
        feature_names = part_names(self.model, "features")
        return {name: value for name, value in model_params.items() if name in feature_names}

    def meta_parameters_for_ways(self, meta_params: Params, ways: int) -> Params:
        """The same: the head is made per task, for any number of classes."""
        return meta_params

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
