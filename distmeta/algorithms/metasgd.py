"""Meta-SGD (Li et al., 2017): MAML with a learned learning rate per parameter entry.

MAML whose inner update rule is `PerParameterSGD`: the meta-parameters are the model's
parameters plus, for each of them, a tensor of the same shape named `inner_lr.<name>`,
initialised to `inner_lr` and meta-learned along with the weights.
"""

from __future__ import annotations

from distmeta.algorithms.maml import MAML
from distmeta.algorithms.update_rules import PerParameterSGD, UpdateRule


class MetaSGD(MAML):
    name = "metasgd"

    def default_update_rule(self) -> UpdateRule:
        return PerParameterSGD(self.inner_lr)
