"""The Bayes-optimal family of a multimodal regression task from its support set: the ceiling
of any task embedding's family identification.

    python benchmarks/multimodal_bayes.py [--tasks 600] [--shots 5] [--grid 150]

For a support set (x, y) it computes, for each mode m of `distmeta/tasks/multimodal.py`, the
marginal likelihood p(y | x, m): the Gaussian noise likelihood integrated over that mode's
parameter prior (the generator's uniform ranges). The additive offset of linear, quadratic, tanh
and |x| is integrated in closed form (a Gaussian in the offset, truncated to its range); the other
parameters on a grid of `--grid` points per axis (the sinusoid's amplitude and phase, the slope
and centre of tanh and |x|, the quadratic's sign, curvature and centre). The modes are equally
likely a priori, so the most likely mode is the Bayes decision: no classifier, and so no nearest
neighbour in any embedding, names the family more often on average. Measured: the same figure at
grids of 100, 150 and 200 (within 1 task in 100).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from distmeta.tasks import task_seed  # noqa: E402
from distmeta.tasks.multimodal import (  # noqa: E402
    CENTER,
    NOISE_STD,
    OFFSET,
    QUADRATIC_CURVATURE,
    SINUSOID_AMPLITUDE,
    SINUSOID_PHASE,
    SLOPE,
    MultimodalTasks,
)


def offset_log_likelihood(residuals: torch.Tensor, noise: float) -> torch.Tensor:
    """log of the mean over offset b ~ U[OFFSET] of prod_i N(r_i - b; 0, noise^2); r: (..., points)."""
    points = residuals.shape[-1]
    mean = residuals.mean(dim=-1)
    spread = (residuals - mean.unsqueeze(-1)).square().sum(dim=-1)
    low, high = OFFSET
    scale = noise / math.sqrt(points)
    mass = torch.special.ndtr((high - mean) / scale) - torch.special.ndtr((low - mean) / scale)
    return (
        -points / 2 * math.log(2 * math.pi * noise**2)
        - spread / (2 * noise**2)
        + 0.5 * math.log(2 * math.pi * noise**2 / points)
        - math.log(high - low)
        + mass.clamp(min=1e-300).log()
    )


def gaussian_log_likelihood(residuals: torch.Tensor, noise: float) -> torch.Tensor:
    points = residuals.shape[-1]
    return -points / 2 * math.log(2 * math.pi * noise**2) - residuals.square().sum(dim=-1) / (2 * noise**2)


def grid_mean(log_likelihoods: torch.Tensor) -> float:
    """log of the mean likelihood over the grid (the prior is uniform on it)."""
    flat = log_likelihoods.reshape(-1)
    return float(torch.logsumexp(flat, dim=0) - math.log(flat.numel()))


def mode_log_evidence(x: torch.Tensor, y: torch.Tensor, grid: int, noise: float = NOISE_STD) -> dict[str, float]:
    """log p(y | x, mode) for every mode; x, y: (points,) float64."""

    def axis(bounds, size=grid):
        return torch.linspace(bounds[0], bounds[1], size, dtype=torch.float64)

    amplitude, phase = axis(SINUSOID_AMPLITUDE)[:, None, None], axis(SINUSOID_PHASE)[None, :, None]
    slope, center = axis(SLOPE)[:, None, None], axis(CENTER)[None, :, None]
    curvature = torch.cat([-axis(QUADRATIC_CURVATURE, grid // 2), axis(QUADRATIC_CURVATURE, grid // 2)])
    return {
        "sinusoid": grid_mean(gaussian_log_likelihood(y - amplitude * torch.sin(x - phase), noise)),
        "linear": grid_mean(offset_log_likelihood(y - axis(SLOPE, 4 * grid)[:, None] * x, noise)),
        "quadratic": grid_mean(offset_log_likelihood(y - curvature[:, None, None] * (x - center) ** 2, noise)),
        "tanh": grid_mean(offset_log_likelihood(y - slope * torch.tanh(x - center), noise)),
        "abs": grid_mean(offset_log_likelihood(y - slope * (x - center).abs(), noise)),
    }


def bayes_family(x: torch.Tensor, y: torch.Tensor, modes: tuple[str, ...], grid: int = 150) -> str:
    """The most likely of `modes` (equally likely a priori) for support set (x, y), each (points, 1)."""
    evidence = mode_log_evidence(x.double().reshape(-1), y.double().reshape(-1), grid)
    return max(modes, key=lambda mode: evidence[mode])


def bayes_hits(tasks: MultimodalTasks, seeds: list[int], grid: int = 150) -> list[bool]:
    """Whether the Bayes decision names the family of each task (task 0 of each seed's stream)."""
    hits = []
    for seed in seeds:
        batch = tasks.sample(1, seed)
        hits.append(bayes_family(batch.support_x[0], batch.support_y[0], tasks.modes, grid) == tasks.task_family(seed))
    return hits


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=600)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--grid", type=int, default=150)
    args = parser.parse_args()
    tasks = MultimodalTasks(args.shots, 10)
    hits = torch.tensor(
        bayes_hits(tasks, [task_seed(0, "test", 0, i) for i in range(args.tasks)], args.grid), dtype=torch.float64
    )
    ci = 1.96 * float(hits.std()) / math.sqrt(len(hits))
    print(
        f"{args.shots}-shot, {args.tasks} tasks, grid {args.grid}: Bayes-optimal top-1 family "
        f"{float(hits.mean()):.3f} +- {ci:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
