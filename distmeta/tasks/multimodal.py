"""Multimodal few-shot regression (Vuorio et al., 2019, "MMAML", section 5.1).

A task first draws its *mode* (which kind of function, uniformly among the configured
modes), then that function's parameters, then K support and K' query inputs; every
output gets Gaussian noise (std 0.3 in the paper). The 2-mode family is {sinusoid,
linear}, 3 modes add quadratic, 5 modes add tanh and |x| (the l1 norm) — `MODE_SETS`.

The ranges are those of the MMAML authors' task generator,
github.com/vuoristo/MMAML-Regression, `maml/datasets/simple_functions.py`
(`FiveFunctionsMetaDataset` and the `generate_*_batch` functions it calls; commit
1a8bea4d):
- sinusoid  y = A sin(x - phase),             A ~ U[0.1, 5], phase ~ U[0, pi]
- linear    y = a x + b,                      a ~ U[-3, 3], b ~ U[-3, 3]
- quadratic y = s alpha (x - c)^2 + b,        alpha ~ U[0.02, 0.15], s = +-1 with equal odds,
                                              c ~ U[-3, 3], b ~ U[-3, 3]
- tanh      y = a tanh(x - c) + b,            a, c, b ~ U[-3, 3]
- abs       y = a |x - c| + b,                a, c, b ~ U[-3, 3]
inputs x ~ U[-5, 5]. The authors' generator fills each meta-batch with equal shares of the
modes; here each task draws its own mode from its own numbers of the meta-batch's stream
(`distmeta.tasks.streams`), so that a task is the same however a meta-batch is shared among
workers. The noise is Box-Muller from the same stream's uniforms.

Each task's mode is recorded in `TaskBatch.modes` (the index into the configured modes),
for analysis and for the Multi-MAML reference; it is never an input to a learner.
"""

from __future__ import annotations

import numpy as np
import torch

from distmeta.tasks.batch import TaskBatch
from distmeta.tasks.streams import below, task_uniforms

INPUT_RANGE = (-5.0, 5.0)
SINUSOID_AMPLITUDE = (0.1, 5.0)
SINUSOID_PHASE = (0.0, np.pi)
SLOPE = (-3.0, 3.0)
"""Slope of linear, tanh and abs functions."""
CENTER = (-3.0, 3.0)
OFFSET = (-3.0, 3.0)
"""The additive constant of every mode but the sinusoid (the authors' intersect / bias)."""
QUADRATIC_CURVATURE = (0.02, 0.15)
NOISE_STD = 0.3

MODES = ("sinusoid", "linear", "quadratic", "tanh", "abs")
MODE_SETS = {2: MODES[:2], 3: MODES[:3], 5: MODES}
"""The mode sets of the paper's 2-, 3- and 5-mode experiments."""


class MultimodalTasks:
    """Regression tasks from a mixture of function families; the split only changes the seed stream."""

    is_classification = False
    output_size = 1

    def __init__(
        self, shots: int, query_shots: int, modes: tuple[str, ...] = MODE_SETS[5], noise_std: float = NOISE_STD
    ):
        unknown = [mode for mode in modes if mode not in MODES]
        if not modes or unknown:
            raise ValueError(f"modes must be a non-empty selection of {MODES}, got {modes}")
        self.shots, self.query_shots = shots, query_shots
        self.modes, self.noise_std = tuple(modes), noise_std

    def task_family(self, seed: int, index: int = 0) -> str:
        """The mode of task `index` of the stream of `seed`: what the knowledge base records."""
        return self.modes[int(self._task_modes(task_uniforms(seed, index, 1, self._draws()))[0])]

    def _draws(self) -> int:
        points = self.shots + self.query_shots
        return 1 + PARAMETERS + points + 2 * -(-points // 2)  # mode, parameters, inputs, noise pairs

    def _task_modes(self, uniforms: np.ndarray) -> np.ndarray:
        return below(uniforms[:, 0], len(self.modes))

    def sample(self, num_tasks: int, seed: int, first: int = 0) -> TaskBatch:
        points = self.shots + self.query_shots
        # a task's numbers: its mode, its function's parameters, its inputs, then its noise
        uniforms = task_uniforms(seed, first, num_tasks, self._draws())
        modes = self._task_modes(uniforms)
        parameters = uniforms[:, 1 : 1 + PARAMETERS, None]  # (tasks, PARAMETERS, 1)
        x = _scale(uniforms[:, 1 + PARAMETERS : 1 + PARAMETERS + points, None], INPUT_RANGE)  # (tasks, points, 1)
        clean = np.zeros_like(x)
        for index, mode in enumerate(self.modes):
            chosen = modes == index
            if chosen.any():
                clean[chosen] = mode_outputs(mode, parameters[chosen], x[chosen])
        noise = _normals(uniforms[:, 1 + PARAMETERS + points :], points)[..., None]
        y = clean + self.noise_std * noise
        inputs, outputs = torch.from_numpy(x).float(), torch.from_numpy(y).float()
        k = self.shots
        return TaskBatch(
            inputs[:, :k], outputs[:, :k], inputs[:, k:], outputs[:, k:], seed=seed, modes=torch.from_numpy(modes)
        )


PARAMETERS = 4
"""Uniforms per task for its function's parameters (the quadratic needs four)."""


def mode_outputs(mode: str, parameters: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Outputs of functions of `mode` at `x` (tasks, points, 1); each task's parameters are its
    (tasks, PARAMETERS, 1) uniforms scaled to the authors' ranges."""
    u = [parameters[:, i : i + 1, 0:1] for i in range(PARAMETERS)]  # each (tasks, 1, 1)
    if mode == "sinusoid":
        return _scale(u[0], SINUSOID_AMPLITUDE) * np.sin(x - _scale(u[1], SINUSOID_PHASE))
    if mode == "linear":
        return _scale(u[0], SLOPE) * x + _scale(u[1], OFFSET)
    if mode == "quadratic":
        sign = np.where(u[1] < 0.5, -1.0, 1.0)
        return sign * _scale(u[0], QUADRATIC_CURVATURE) * (x - _scale(u[2], CENTER)) ** 2 + _scale(u[3], OFFSET)
    if mode == "tanh":
        return _scale(u[0], SLOPE) * np.tanh(x - _scale(u[1], CENTER)) + _scale(u[2], OFFSET)
    if mode == "abs":
        return _scale(u[0], SLOPE) * np.abs(x - _scale(u[1], CENTER)) + _scale(u[2], OFFSET)
    raise ValueError(f"unknown mode {mode!r} (choose from {', '.join(MODES)})")


def _scale(uniforms: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    low, high = bounds
    return low + (high - low) * uniforms


def _normals(uniforms: np.ndarray, count: int) -> np.ndarray:
    """`count` standard normals per row from pairs of uniforms (Box-Muller)."""
    radius = np.sqrt(-2.0 * np.log1p(-uniforms[:, 0::2]))  # 1 - u is in (0, 1]: no log of 0
    angle = 2.0 * np.pi * uniforms[:, 1::2]
    return np.concatenate([radius * np.cos(angle), radius * np.sin(angle)], axis=1)[:, :count]
