"""The classifier optimisee of Andrychowicz et al.'s MNIST experiment: one hidden layer of
sigmoid units, cross-entropy, its parameters a plain dict (as every optimisee's are).

Shared by the digits and Omniglot optimisee families, which differ only in their images.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from distmeta.tasks.optimisee import Params


def init_classifier(generator: torch.Generator, inputs: int, hidden: int, classes: int) -> Params:
    """Weights ~ N(0, 1 / fan_in) (hidden layer first, from `generator`), zero biases."""
    return {
        "hidden.weight": torch.randn(hidden, inputs, generator=generator) / math.sqrt(inputs),
        "hidden.bias": torch.zeros(hidden),
        "output.weight": torch.randn(classes, hidden, generator=generator) / math.sqrt(hidden),
        "output.bias": torch.zeros(classes),
    }


def classifier_loss(params: Params, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the classifier on (examples, inputs) `images`."""
    hidden = torch.sigmoid(images @ params["hidden.weight"].T + params["hidden.bias"])
    return F.cross_entropy(hidden @ params["output.weight"].T + params["output.bias"], labels)
