"""distmeta: distributed meta-learning (MAML, first-order MAML, Reptile, ANIL, Meta-SGD, ProtoNets).

import distmeta
learner = distmeta.load("runs/my-run")          # a checkpoint file or run directory
model = learner.adapt(support_x, support_y)     # a few examples of a new task
model.predict(query_x)
"""

__version__ = "0.1.0"


def load(checkpoint, device=None):
    """A Learner from a checkpoint file or run directory; see `distmeta.api`."""
    from distmeta.api import load as _load  # torch is imported only when needed

    return _load(checkpoint, device)
