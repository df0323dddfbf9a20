"""Sinusoid regression, exactly as in the MAML paper (Finn et al., 2017, section 5.1).

Each task is y = A sin(x - phase) with amplitude A ~ U[0.1, 5.0] and phase ~ U[0, pi];
inputs x ~ U[-5, 5]; K support and K' query points per task.
"""

from __future__ import annotations

import numpy as np
import torch

from distmeta.tasks.batch import TaskBatch
from distmeta.tasks.streams import task_uniforms

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

    def sample(self, num_tasks: int, seed: int, first: int = 0) -> TaskBatch:
        points = self.shots + self.query_shots
        # a task's numbers: amplitude, phase, then its points' inputs
        uniforms = task_uniforms(seed, first, num_tasks, 2 + points)
        amplitude = _scale(uniforms[:, 0:1, None], AMPLITUDE_RANGE)
        phase = _scale(uniforms[:, 1:2, None], PHASE_RANGE)
        x = _scale(uniforms[:, 2:, None], INPUT_RANGE)
        y = amplitude * np.sin(x - phase)
        inputs, outputs = torch.from_numpy(x).float(), torch.from_numpy(y).float()
        k = self.shots
        return TaskBatch(inputs[:, :k], outputs[:, :k], inputs[:, k:], outputs[:, k:], seed=seed)


def _scale(uniforms: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    low, high = bounds
    return low + (high - low) * uniforms
