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
modes; here each task draws its own mode from its own seed, so that a task is the same
however a meta-batch is shared among workers (`distmeta.tasks.base.task_seed`).

Each task's mode is recorded in `TaskBatch.modes` (the index into the configured modes),
for analysis and for the Multi-MAML reference; it is never an input to a learner.
"""

from __future__ import annotations

import numpy as np
import torch

from distmeta.tasks.batch import TaskBatch

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


def draw_function(mode: str, rng: np.random.Generator):
    """A function of `mode` with parameters drawn from the authors' ranges: x -> y (numpy)."""
    if mode == "sinusoid":
        amplitude, phase = rng.uniform(*SINUSOID_AMPLITUDE), rng.uniform(*SINUSOID_PHASE)
        return lambda x: amplitude * np.sin(x - phase)
    if mode == "linear":
        slope, offset = rng.uniform(*SLOPE), rng.uniform(*OFFSET)
        return lambda x: slope * x + offset
    if mode == "quadratic":
        curvature = rng.uniform(*QUADRATIC_CURVATURE) * rng.choice((-1.0, 1.0))
        center, offset = rng.uniform(*CENTER), rng.uniform(*OFFSET)
        return lambda x: curvature * (x - center) ** 2 + offset
    if mode == "tanh":
        slope, center, offset = rng.uniform(*SLOPE), rng.uniform(*CENTER), rng.uniform(*OFFSET)
        return lambda x: slope * np.tanh(x - center) + offset
    if mode == "abs":
        slope, center, offset = rng.uniform(*SLOPE), rng.uniform(*CENTER), rng.uniform(*OFFSET)
        return lambda x: slope * np.abs(x - center) + offset
    raise ValueError(f"unknown mode {mode!r} (choose from {', '.join(MODES)})")


class MultimodalTasks:
    """Regression tasks from a mixture of function families; the split only changes the seed stream."""

    is_classification = False
    output_size = 1

    def __init__(self, shots: int, query_shots: int, modes: tuple[str, ...] = MODE_SETS[5],
                 noise_std: float = NOISE_STD):
        unknown = [mode for mode in modes if mode not in MODES]
        if not modes or unknown:
            raise ValueError(f"modes must be a non-empty selection of {MODES}, got {modes}")
        self.shots, self.query_shots = shots, query_shots
        self.modes, self.noise_std = tuple(modes), noise_std

    def task_family(self, seed: int) -> str:
        """The mode of the task of `seed` (`sample`'s first draw): what the knowledge base records."""
        return self.modes[int(np.random.default_rng(seed).integers(len(self.modes)))]

    def sample(self, num_tasks: int, seed: int) -> TaskBatch:
        rng = np.random.default_rng(seed)
        points = self.shots + self.query_shots
        xs, ys, modes = [], [], []
        for _ in range(num_tasks):
            mode = int(rng.integers(len(self.modes)))
            function = draw_function(self.modes[mode], rng)
            x = rng.uniform(*INPUT_RANGE, size=(points, 1))
            xs.append(x)
            ys.append(function(x) + rng.normal(0.0, self.noise_std, size=x.shape))
            modes.append(mode)
        x, y = torch.from_numpy(np.stack(xs)).float(), torch.from_numpy(np.stack(ys)).float()
        k = self.shots
        return TaskBatch(x[:, :k], y[:, :k], x[:, k:], y[:, k:], seed=seed, modes=torch.tensor(modes))
