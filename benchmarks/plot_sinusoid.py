"""Plot sinusoid fits before and after adaptation, as in Figure 2 of the MAML paper.

    python benchmarks/plot_sinusoid.py runs/sinusoid-maml-5shot [--out benchmarks/results/sinusoid_fits.png]

Three held-out tasks: the true function, the K support points, and the model's
prediction after 0, 1 and 10 inner steps on those points.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen needed
import matplotlib.pyplot as plt
import numpy as np
import torch

import distmeta

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sinusoid_fits.png")
    parser.add_argument("--shots", type=int, default=5)
    args = parser.parse_args()
    learner = distmeta.load(args.checkpoint)
    rng = np.random.default_rng(2024)
    grid = torch.linspace(-5, 5, 200).unsqueeze(1)
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharey=True)
    for axis in axes:
        amplitude, phase = rng.uniform(0.1, 5.0), rng.uniform(0, np.pi)
        x = torch.from_numpy(rng.uniform(-5, 5, (args.shots, 1))).float()
        axis.plot(grid, amplitude * torch.sin(grid - phase), "k-", lw=2, label="true function")
        axis.plot(x, amplitude * torch.sin(x - phase), "k^", ms=8, label=f"{args.shots} support points")
        for steps, style in ((0, ":"), (1, "--"), (10, "-")):
            prediction = learner.adapt(x, amplitude * torch.sin(x - phase), steps=steps).predict(grid)
            axis.plot(grid, prediction, style, label=f"after {steps} inner steps")
        axis.set_title(f"A={amplitude:.2f}, phase={phase:.2f}")
        axis.set_xlabel("x")
    axes[0].legend(fontsize=8, loc="lower left")
    figure.suptitle(f"{learner.config.algorithm.name} on sinusoid regression, step {learner.step}")
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
