"""Reptile (Nichol, Achiam, Schulman, 2018): move the initialisation towards adapted weights.

The meta-gradient of a task is (theta - phi), where phi is theta after
`inner_steps` SGD steps on the support set; with plain SGD as meta-optimiser at
rate eps this is exactly theta <- theta + eps * mean(phi - theta).
The query loss after adaptation is reported, but not differentiated.
"""

from __future__ import annotations

from distmeta.algorithms.maml import MAML
from distmeta.algorithms.base import Params


class Reptile(MAML):
    name = "reptile"

    def task_meta_gradient(self, meta_params: Params, support_x, support_y, query_x, query_y):
        adapted = self.adapt(meta_params, support_x, support_y, self.inner_steps, differentiable=False)
        adapted = {name: value.detach() for name, value in adapted.items()}
        grads = {name: meta_params[name] - adapted[name] for name in meta_params}
        outputs = self.predict(meta_params, adapted, query_x)
        return grads, self.loss(outputs, query_y).detach(), self.score(outputs, query_y).detach()
