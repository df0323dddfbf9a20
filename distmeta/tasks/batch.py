"""`TaskBatch`: a meta-batch of tasks as stacked tensors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class TaskBatch:
    """Support and query sets of several tasks; the leading dimension is the task.

    Regression: x is (tasks, points, 1) and y is (tasks, points, 1), float.
    Classification: x is (tasks, ways * shots, channels, height, width), float,
    and y is (tasks, ways * shots), int64 labels in [0, ways).
    `seed` is the seed the batch was sampled from, so that a failure can name it.
    `modes` (None for single-mode families): each task's mode, an int64 index into its
    family's modes (`distmeta.tasks.multimodal`), for analysis only: not in `tensors()`,
    so never an input to a learner.
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    seed: int
    modes: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.support_x.shape[0]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.support_x, self.support_y, self.query_x, self.query_y

    def to(self, device: torch.device | str) -> TaskBatch:
        support_x, support_y, query_x, query_y = (t.to(device, non_blocking=True) for t in self.tensors())
        return TaskBatch(support_x, support_y, query_x, query_y, seed=self.seed, modes=self.modes)

    @staticmethod
    def concat(batches: list[TaskBatch]) -> TaskBatch:
        """One batch of the tasks of all `batches`, in order; the seed is the first's."""
        support_x, support_y, query_x, query_y = (torch.cat(column) for column in zip(*(b.tensors() for b in batches)))
        known_modes = [b.modes for b in batches if b.modes is not None]
        modes = torch.cat(known_modes) if len(known_modes) == len(batches) else None
        return TaskBatch(support_x, support_y, query_x, query_y, seed=batches[0].seed, modes=modes)

    @staticmethod
    def from_classes(images: np.ndarray, labels: np.ndarray, shots: int, seed: int, levels: float = 1.0) -> TaskBatch:
        """N-way tasks from `images` (tasks, ways, per_class, H, W), of which the first `shots` of
        each class are support and the rest query, and each class's `labels` (tasks, ways).

        Pixels become float32 `images / levels` (255 for bytes), support and query each cut, laid out
        class-major and converted by one numpy pass, then wrapped without a copy: torch's copies of
        a few MB wake its thread pool, which costs more than the sampling itself here.
        """
        tasks, ways, per_class = images.shape[:3]

        def examples(part: np.ndarray) -> torch.Tensor:
            pixels = np.divide(part, np.float32(levels), dtype=np.float32)  # contiguous, whatever `part`
            return torch.from_numpy(pixels.reshape(tasks, -1, 1, *images.shape[3:]))

        def class_labels(count: int) -> torch.Tensor:
            return torch.from_numpy(np.repeat(labels.astype(np.int64), count, axis=1))

        return TaskBatch(
            examples(images[:, :, :shots]),
            class_labels(shots),
            examples(images[:, :, shots:]),
            class_labels(per_class - shots),
            seed=seed,
        )

    def select(self, start: int, stop: int) -> TaskBatch:
        """Tasks start..stop-1, e.g. one worker's share of a meta-batch."""
        support_x, support_y, query_x, query_y = (t[start:stop] for t in self.tensors())
        modes = None if self.modes is None else self.modes[start:stop]
        return TaskBatch(support_x, support_y, query_x, query_y, seed=self.seed, modes=modes)
