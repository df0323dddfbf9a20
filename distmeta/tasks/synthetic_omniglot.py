"""Synthetic Omniglot: N-way K-shot tasks of Omniglot's shapes on random images.

For measuring speed where the Omniglot data are not at hand (`distmeta bench --task
omniglot` without roots): tensors of the same shapes, classes and dtypes as
`OmniglotTasks` gives, so that a meta-step costs what it costs on Omniglot. Each class
of a task is a random binary "character" (about a fifth of its pixels ink, as in
Omniglot's strokes) and each drawing of it the character with a tenth of its pixels
flipped, so that tasks can be learnt, but nothing learnt here means anything about
Omniglot. Like every task family, a task is drawn from its seed alone.
"""

from __future__ import annotations

import numpy as np
import torch

from distmeta.tasks.batch import TaskBatch

INK = 0.2
"""Share of a character's pixels that are ink."""
NOISE = 0.1
"""Share of a drawing's pixels flipped from its character."""


class SyntheticOmniglotTasks:
    """`ways`-way tasks with `shots` support and `query_shots` query drawings per class."""

    is_classification = True
    synthetic = True

    def __init__(self, ways: int, shots: int, query_shots: int, image_size: int):
        self.ways, self.shots, self.query_shots = ways, shots, query_shots
        self.output_size = ways
        self.input_shape = (1, image_size, image_size)

    def sample(self, num_tasks: int, seed: int) -> TaskBatch:
        rng = np.random.default_rng(seed)
        size = self.input_shape[1:]
        per_class = self.shots + self.query_shots
        characters = rng.random((num_tasks, self.ways, 1, *size)) < INK
        flips = rng.random((num_tasks, self.ways, per_class, *size)) < NOISE
        x = torch.from_numpy(characters ^ flips).float()  # (tasks, ways, per_class, H, W)
        labels = torch.from_numpy(np.stack([rng.permutation(self.ways) for _ in range(num_tasks)]))
        y = labels.unsqueeze(-1).expand(num_tasks, self.ways, per_class)
        k = self.shots

        def flat(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(num_tasks, -1, *t.shape[3:])

        support_x, query_x = flat(x[:, :, :k]).unsqueeze(2), flat(x[:, :, k:]).unsqueeze(2)
        return TaskBatch(support_x, flat(y[:, :, :k]).contiguous(), query_x, flat(y[:, :, k:]).contiguous(),
                         seed=seed)
