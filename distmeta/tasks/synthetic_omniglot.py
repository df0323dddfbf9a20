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

from distmeta.tasks.batch import TaskBatch
from distmeta.tasks.streams import permutations, task_bytes, task_uniforms

INK = 0.2
"""Share of a character's pixels that are ink."""
NOISE = 0.1
"""Share of a drawing's pixels flipped from its character."""
INK_BELOW, NOISE_BELOW = round(INK * 256), round(NOISE * 256)
"""The shares as thresholds on random bytes (51/256 and 26/256)."""


class SyntheticOmniglotTasks:
    """`ways`-way tasks with `shots` support and `query_shots` query drawings per class."""

    is_classification = True
    synthetic = True

    def __init__(self, ways: int, shots: int, query_shots: int, image_size: int):
        self.ways, self.shots, self.query_shots = ways, shots, query_shots
        self.output_size = ways
        self.input_shape = (1, image_size, image_size)

    def sample(self, num_tasks: int, seed: int, first: int = 0) -> TaskBatch:
        ways, size = self.ways, self.input_shape[1:]
        per_class = self.shots + self.query_shots
        pixels = size[0] * size[1]
        # a task's numbers: its label order, then a byte per pixel of each character and drawing
        uniforms = task_uniforms(seed, first, num_tasks, ways)
        random_bytes = task_bytes(seed, first, num_tasks, ways * (1 + per_class) * pixels, part=1)
        random_bytes = random_bytes.reshape(num_tasks, ways, 1 + per_class, *size)
        characters = random_bytes[:, :, :1] < INK_BELOW
        flips = random_bytes[:, :, 1:] < NOISE_BELOW
        drawings = characters ^ flips  # (tasks, ways, per_class, H, W): True is ink
        return TaskBatch.from_classes(drawings, permutations(uniforms), self.shots, seed)
