"""Omniglot N-way K-shot classification tasks (Lake et al., 2015; as in MAML and ProtoNets).

A class is a character, or, with `rotations` (the default, as in the papers), a
character turned by 0, 90, 180 or 270 degrees. Alphabets, not characters, are
split into meta-train, meta-validation and meta-test, so that no test character
shares an alphabet with a training one. Every check on the data happens when
the distribution is built; `sample` cannot fail on data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from distmeta.errors import DatasetError, NotEnoughClassesError
from distmeta.tasks.base import SPLITS
from distmeta.tasks.batch import TaskBatch
from distmeta.tasks.omniglot_cache import OmniglotImages, load_images

if TYPE_CHECKING:  # the engine reads the config by attribute; it does not import it at run time
    from distmeta.config import OmniglotConfig


def split_alphabets(alphabets: list[str], config: OmniglotConfig) -> dict[str, list[str]]:
    """Alphabets of each split, shuffled with `config.split_seed`: at least one each."""
    names = sorted(set(alphabets))
    if len(names) < len(SPLITS):
        raise DatasetError(", ".join(config.roots), f"has {len(names)} alphabets; a split by alphabet needs at least 3")
    order = np.random.default_rng(config.split_seed).permutation(len(names))
    shuffled = [names[i] for i in order]
    test = max(1, round(config.test_fraction * len(names)))
    val = max(1, round(config.val_fraction * len(names)))
    if test + val >= len(names):
        test, val = 1, 1
    return {"test": sorted(shuffled[:test]), "val": sorted(shuffled[test:test + val]),
            "train": sorted(shuffled[test + val:])}


class OmniglotTasks:
    """`ways`-way tasks with `shots` support and `query_shots` query drawings per class."""

    is_classification = True

    def __init__(self, config: OmniglotConfig, split: str, ways: int, shots: int, query_shots: int):
        self.config, self.split = config, split
        self.ways, self.shots, self.query_shots = ways, shots, query_shots
        self.output_size = ways
        self.input_shape = (1, config.image_size, config.image_size)
        data = load_images(config.roots, config.cache_dir, config.image_size)
        self.alphabets = split_alphabets([a for a, _ in data.characters], config)[split]
        characters = [i for i, (alphabet, _) in enumerate(data.characters) if alphabet in self.alphabets]
        self._drawings = [data.drawings_of(i) for i in characters]
        self._alphabet_of = [data.characters[i][0] for i in characters]
        self._check_drawings(data, characters)
        rotations = 4 if config.rotations else 1
        # class c is character c // rotations, turned by (c % rotations) quarter turns
        self.num_classes = len(characters) * rotations
        self._rotations = rotations
        self._images = data.images
        if self.num_classes < ways:
            raise NotEnoughClassesError(", ".join(config.roots), split, self.num_classes, ways)

    def _check_drawings(self, data: OmniglotImages, characters: list[int]) -> None:
        needed = self.shots + self.query_shots
        for character, drawings in zip(characters, self._drawings):
            if len(drawings) < needed:
                raise DatasetError(
                    data.character_paths[character],
                    f"has {len(drawings)} drawings, fewer than shots + query_shots = "
                    f"{self.shots} + {self.query_shots} = {needed}",
                )

    def sample(self, num_tasks: int, seed: int) -> TaskBatch:
        rng = np.random.default_rng(seed)
        per_class = self.shots + self.query_shots
        images = np.empty((num_tasks, self.ways, per_class) + self._images.shape[1:], dtype=np.uint8)
        labels = np.empty((num_tasks, self.ways), dtype=np.int64)
        for task in range(num_tasks):
            classes = rng.choice(self.num_classes, self.ways, replace=False)
            labels[task] = rng.permutation(self.ways)
            for slot, cls in enumerate(classes):
                character, quarter_turns = divmod(int(cls), self._rotations)
                rows = rng.choice(self._drawings[character], per_class, replace=False)
                images[task, slot] = np.rot90(self._images[rows], quarter_turns, axes=(1, 2))
        return self._to_batch(images, labels, seed)

    def task_family(self, seed: int) -> str:
        """The alphabet most of the classes of task `seed` come from (the first in name order on
        a tie): what the knowledge base colours and compares tasks by. It repeats `sample`'s first draw."""
        classes = np.random.default_rng(seed).choice(self.num_classes, self.ways, replace=False)
        alphabets = [self._alphabet_of[int(c) // self._rotations] for c in classes]
        return max(sorted(set(alphabets)), key=alphabets.count)

    def _to_batch(self, images: np.ndarray, labels: np.ndarray, seed: int) -> TaskBatch:
        tasks = images.shape[0]
        x = torch.from_numpy(images).float().div_(255.0)  # (tasks, ways, per_class, H, W)
        y = torch.from_numpy(labels).unsqueeze(-1).expand(tasks, self.ways, images.shape[2])
        k = self.shots

        def flat(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(tasks, -1, *t.shape[3:])

        support_x, query_x = flat(x[:, :, :k]).unsqueeze(2), flat(x[:, :, k:]).unsqueeze(2)
        support_y, query_y = flat(y[:, :, :k]), flat(y[:, :, k:])
        return TaskBatch(support_x, support_y.contiguous(), query_x, query_y.contiguous(), seed=seed)
