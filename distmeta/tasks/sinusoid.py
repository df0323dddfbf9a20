"""Sinusoid regression, exactly as in the MAML paper (Finn et al., 2017, section 5.1).

Each task is y = A sin(x - phase) with amplitude A ~ U[0.1, 5.0] and phase ~ U[0, pi];
inputs x ~ U[-5, 5]; K support and K' query points per task.
"""

from __future__ import annotations

import numpy as np
import torch

from distmeta.tasks.batch import TaskBatch

AMPLITUDE_RANGE = (0.1, 5.0)
PHASE_RANGE = (0.0, np.pi)
INPUT_RANGE = (-5.0, 5.0)


class SinusoidTasks:
    """Samples sinusoid regression tasks; the split only changes the seed stream."""

    is_classification = False
    output_size = 1

    def __init__(self, shots: int, query_shots: int):
        self.shots = shots
        self.query_shots = query_shots

    def sample(self, num_tasks: int, seed: int) -> TaskBatch:
        rng = np.random.default_rng(seed)
        amplitude = rng.uniform(*AMPLITUDE_RANGE, size=(num_tasks, 1, 1))
        phase = rng.uniform(*PHASE_RANGE, size=(num_tasks, 1, 1))
        points = self.shots + self.query_shots
        x = rng.uniform(*INPUT_RANGE, size=(num_tasks, points, 1))
        y = amplitude * np.sin(x - phase)
        x, y = torch.from_numpy(x).float(), torch.from_numpy(y).float()
        k = self.shots
        return TaskBatch(x[:, :k], y[:, :k], x[:, k:], y[:, k:], seed=seed)

