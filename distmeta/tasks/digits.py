"""A small MLP classifier on scikit-learn's bundled 8x8 digits, trained with minibatches.

The optimisee of Andrychowicz et al.'s MNIST experiment, scaled to `load_digits` (1,797 images
of 8x8 pixels, 10 classes; shipped with scikit-learn, so nothing is downloaded): one hidden
layer of 20 sigmoid units, cross-entropy, minibatches of 128. A task is a starting point
(weights ~ N(0, 1 / fan_in), zero biases) and an order of the split's images; step t trains
on images t*B .. t*B + B - 1 of that order, cycling. The images are split once, 80% for
meta-training tasks and 20% for held-out ones. A wider MLP (`hidden=40`) and a longer horizon
are held-out variants of the same family.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from distmeta.tasks.optimisee import Params, TaskData, check_split
from distmeta.tasks.sigmoid_mlp import classifier_loss, init_classifier

TRAIN_FRACTION = 0.8
SPLIT_SEED = 0


@functools.lru_cache(maxsize=1)
def all_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of the whole data set: 1,797 images flattened to 64 pixels in [0, 1]."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError("the digits optimisee needs scikit-learn: pip install 'distmeta[digits]'") from error
    digits = load_digits()
    return torch.from_numpy(digits.data / 16.0).float(), torch.from_numpy(digits.target).long()


def split_indices(split: str, size: int) -> torch.Tensor:
    """Which of `size` images belong to `split`: a fixed permutation cut at TRAIN_FRACTION."""
    order = torch.from_numpy(np.random.default_rng(SPLIT_SEED).permutation(size))
    cut = int(TRAIN_FRACTION * size)
    return order[:cut] if split == "train" else order[cut:]


class DigitsMLPFamily:
    """MLP classifiers 64 - hidden (sigmoid) - 10 on the digits of `split`."""

    def __init__(self, split: str = "train", hidden: int = 20, batch_size: int = 128):
        check_split(split)
        if hidden < 1 or batch_size < 1:
            raise ValueError(f"hidden and batch_size must be at least 1, got {hidden}, {batch_size}")
        self.split = split
        self.hidden = hidden
        images, labels = all_digits()
        indices = split_indices(split, len(labels))
        self.images, self.labels = images[indices], labels[indices]
        self.batch_size = min(batch_size, len(self.labels))

    def init(self, seed: int) -> tuple[Params, TaskData]:
        generator = torch.Generator().manual_seed(seed)
        params = init_classifier(generator, self.images.shape[1], self.hidden, 10)
        return params, {"order": torch.randperm(len(self.labels), generator=generator)}

    def loss(self, params: Params, task: TaskData, step: torch.Tensor) -> torch.Tensor:
        # index arithmetic on tensors only, so that a batch of unrolls (vmap) each reads its own minibatch
        positions = (step * self.batch_size + torch.arange(self.batch_size)) % len(self.labels)
        indices = task["order"].gather(0, positions)
        return classifier_loss(params, self.images.index_select(0, indices), self.labels.index_select(0, indices))

    def full_loss(self, params: Params, task: TaskData) -> torch.Tensor:
        return classifier_loss(params, self.images, self.labels)
