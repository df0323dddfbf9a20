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

from distmeta.errors import DatasetError, NotEnoughClassesError
from distmeta.tasks.base import SPLITS
from distmeta.tasks.batch import TaskBatch
from distmeta.tasks.omniglot_cache import OmniglotImages, load_images
from distmeta.tasks.streams import choose_distinct, permutations, task_uniforms

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
    return {
        "test": sorted(shuffled[:test]),
        "val": sorted(shuffled[test : test + val]),
        "train": sorted(shuffled[test + val :]),
    }


class OmniglotTasks:
    """`ways`-way tasks with `shots` support and `query_shots` query drawings per class."""

    is_classification = True

    def __init__(
        self,
        config: OmniglotConfig,
        split: str,
        ways: int,
        shots: int,
        query_shots: int,
        ways_field: str = "task.ways",
    ):
        """`ways_field` is the config field that asked for `ways`, named if the split has too few classes."""
        self.config, self.split = config, split
        self.ways, self.shots, self.query_shots = ways, shots, query_shots
        self.output_size = ways
        self.input_shape = (1, config.image_size, config.image_size)
        data = load_images(config.roots, config.cache_dir, config.image_size)
        self.alphabets = split_alphabets([a for a, _ in data.characters], config)[split]
        characters = [i for i, (alphabet, _) in enumerate(data.characters) if alphabet in self.alphabets]
        drawings = [data.drawings_of(i) for i in characters]
        self._check_drawings(data, characters, drawings)
        self._alphabet_of = [data.characters[i][0] for i in characters]
        # drawing d of character c is image _drawing_rows[c, d], d < _drawing_counts[c]: the
        # sampler picks drawings by array arithmetic on this table, never a list per character
        self._drawing_counts = np.array([len(rows) for rows in drawings], dtype=np.int64)
        self._drawing_rows = np.zeros((len(drawings), max(self._drawing_counts, default=0)), dtype=np.int64)
        for character, rows in enumerate(drawings):
            self._drawing_rows[character, : len(rows)] = rows
        rotations = 4 if config.rotations else 1
        # class c is character c // rotations, turned by (c % rotations) quarter turns
        self.num_classes = len(characters) * rotations
        self._rotations = rotations
        self._images = data.images
        if self.num_classes < ways:
            raise NotEnoughClassesError(", ".join(config.roots), split, self.num_classes, ways, ways_field)

    def _check_drawings(self, data: OmniglotImages, characters: list[int], rows: list[np.ndarray]) -> None:
        needed = self.shots + self.query_shots
        for character, drawings in zip(characters, rows):
            if len(drawings) < needed:
                raise DatasetError(
                    data.character_paths[character],
                    f"has {len(drawings)} drawings, fewer than shots + query_shots = "
                    f"{self.shots} + {self.query_shots} = {needed}",
                )

    def _task_numbers(self, seed: int, first: int, num_tasks: int) -> tuple[np.ndarray, np.ndarray]:
        """Tasks' classes (tasks, ways) and the rest of their numbers: label order, then drawings."""
        ways, per_class = self.ways, self.shots + self.query_shots
        # a task's numbers: its classes, its label order, then each class's drawings
        uniforms = task_uniforms(seed, first, num_tasks, 2 * ways + ways * per_class)
        return choose_distinct(uniforms[:, :ways], self.num_classes), uniforms[:, ways:]

    def sample(self, num_tasks: int, seed: int, first: int = 0) -> TaskBatch:
        ways, per_class = self.ways, self.shots + self.query_shots
        classes, uniforms = self._task_numbers(seed, first, num_tasks)  # classes: (tasks, ways)
        labels = permutations(uniforms[:, :ways])
        characters, quarter_turns = np.divmod(classes, self._rotations)
        drawing_uniforms = uniforms[:, ways:].reshape(num_tasks, ways, per_class)
        drawings = choose_distinct(drawing_uniforms, self._drawing_counts[characters])
        rows = self._drawing_rows[characters[..., None], drawings]  # (tasks, ways, per_class)
        images = self._images[rows.reshape(-1)].reshape(rows.shape + self._images.shape[1:])
        return TaskBatch.from_classes(_rotate(images, quarter_turns), labels, self.shots, seed, levels=255.0)

    def task_family(self, seed: int, index: int = 0) -> str:
        """The alphabet most of the classes of task `index` of the stream of `seed` come from (the
        first in name order on a tie): what the knowledge base colours and compares tasks by."""
        alphabets = self.task_alphabets(seed, index)
        return max(sorted(set(alphabets)), key=alphabets.count)

    def task_alphabets(self, seed: int, index: int = 0) -> list[str]:
        """The alphabet of each class of task `index` of the stream of `seed`, in class order."""
        classes = self._task_numbers(seed, index, 1)[0][0]
        return [self._alphabet_of[int(c) // self._rotations] for c in classes]


def _rotate(images: np.ndarray, quarter_turns: np.ndarray) -> np.ndarray:
    """Each class's drawings (tasks, ways, per_class, H, W) turned by its (tasks, ways) quarter turns."""
    for turns in range(1, 4):
        selected = quarter_turns == turns
        if selected.any():
            images[selected] = np.rot90(images[selected], turns, axes=(-2, -1))
    return images
