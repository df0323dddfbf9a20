"""An MLP classifier on one N-way Omniglot task as an optimisee, trained with minibatches.

Andrychowicz et al.'s MNIST optimisee (one hidden layer of sigmoid units, cross-entropy) on
Omniglot: a task is `ways` classes of the split's alphabets with `drawings` drawings each,
drawn by the few-shot family (`OmniglotTasks`, or `SyntheticOmniglotTasks` where the data
are absent) as task 0 of the counter-based stream keyed by the task's seed, images at the
family's downsampled size (e.g. 14x14, `task.omniglot.image_size`) flattened to pixels in
[0, 1]. Step t trains on images t*B .. t*B + B - 1 of a seeded order of the task's images,
cycling; `full_loss` is the loss on all of them (what the optimiser minimises, as for digits).

Meta-train tasks come from the meta-train alphabets, meta-test tasks from the meta-test ones
(the few-shot split by alphabet, `task.omniglot.split_seed`), and their seeds from different
streams. A wider MLP (`hidden=40`) is the held-out variant.
"""

from __future__ import annotations

import torch

from distmeta.tasks.optimisee import Params, TaskData, check_split
from distmeta.tasks.sigmoid_mlp import classifier_loss, init_classifier


class OmniglotMLPFamily:
    """MLP classifiers pixels - hidden (sigmoid) - ways on the N-way tasks of `classes`.

    `classes` is a few-shot Omniglot distribution of the split (real or synthetic) whose tasks
    have `shots` drawings per class and no query set: each of its tasks is one optimisee task.
    """

    def __init__(self, classes, split: str = "train", hidden: int = 20, batch_size: int = 32):
        check_split(split)
        if hidden < 1 or batch_size < 1:
            raise ValueError(f"hidden and batch_size must be at least 1, got {hidden}, {batch_size}")
        self.classes = classes
        self.split = split
        self.hidden = hidden
        self.ways = classes.ways
        self.images = classes.ways * classes.shots
        self.pixels = classes.input_shape[1] * classes.input_shape[2]
        self.batch_size = min(batch_size, self.images)

    def init(self, seed: int) -> tuple[Params, TaskData]:
        generator = torch.Generator().manual_seed(seed)
        params = init_classifier(generator, self.pixels, self.hidden, self.ways)
        task = self.classes.sample(1, seed)
        return params, {
            "images": task.support_x[0].reshape(self.images, self.pixels),
            "labels": task.support_y[0],
            "order": torch.randperm(self.images, generator=generator),
        }

    def loss(self, params: Params, task: TaskData, step: torch.Tensor) -> torch.Tensor:
        # index arithmetic on tensors only, so that a batch of unrolls (vmap) each reads its own minibatch
        positions = (step * self.batch_size + torch.arange(self.batch_size)) % self.images
        indices = task["order"].gather(0, positions)
        images, labels = task["images"].index_select(0, indices), task["labels"].index_select(0, indices)
        return classifier_loss(params, images, labels)

    def full_loss(self, params: Params, task: TaskData) -> torch.Tensor:
        return classifier_loss(params, task["images"], task["labels"])
