"""The picture of a knowledge base: its embeddings in 2-D (PCA), coloured by task family."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import torch


def principal_components(embeddings: torch.Tensor, count: int = 2) -> torch.Tensor:
    """The rows projected on their first `count` principal axes (centred; SVD, deterministic)."""
    centred = embeddings.double() - embeddings.double().mean(dim=0)
    _, _, right = torch.linalg.svd(centred, full_matrices=False)
    axes = right[:count].T
    # fix each axis's sign (SVD's is arbitrary) so that the picture is the same on every run
    signs = torch.sign(axes[axes.abs().argmax(dim=0), torch.arange(axes.shape[1])])
    return (centred @ (axes * signs)).float()


def plot_embeddings(path: Path | BinaryIO, embeddings: torch.Tensor, families: list[str | None], title: str) -> None:
    import matplotlib  # an optional dependency (distmeta[plot]): imported only to draw

    matplotlib.use("Agg")  # files only: no display on cluster nodes or in CI
    import matplotlib.pyplot as plt

    points = principal_components(embeddings)
    figure, axes = plt.subplots(figsize=(6.4, 5.0))
    groups: dict[str, list[int]] = {}
    for row, family in enumerate(families):
        groups.setdefault(family or "(no family)", []).append(row)
    for family, rows in sorted(groups.items()):
        chosen = points[torch.tensor(rows)]
        axes.scatter(chosen[:, 0], chosen[:, 1], s=8, alpha=0.7, label=f"{family} ({len(rows)})")
    if len(groups) <= 20:
        axes.legend(fontsize="small", markerscale=2)
    axes.set_xlabel("principal component 1")
    axes.set_ylabel("principal component 2")
    axes.set_title(title, fontsize="medium")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
