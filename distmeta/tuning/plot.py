"""The picture of a search: the metric against the first searched number, coloured by the next field."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import matplotlib

matplotlib.use("Agg")  # files only: no display on cluster nodes or in CI
import matplotlib.pyplot as plt  # noqa: E402

from distmeta.tuning.space import SearchSpace  # noqa: E402


def plot_search(path: Path | BinaryIO, space: SearchSpace, ranked: list, metric: str) -> None:
    numeric = [d for d in space.dimensions if all(isinstance(o.values[d.path], (int, float)) for o in ranked)]
    x_dimension = next((d for d in numeric if d.kind in ("loguniform", "uniform")), numeric[0] if numeric else None)
    others = [d for d in space.dimensions if d is not x_dimension]
    colour_by = others[0].path if others else None
    scored = [o for o in ranked if o.metric is not None]
    failed = len(ranked) - len(scored)

    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    if x_dimension is None:
        axes.bar(range(len(scored)), [o.metric for o in scored])
        axes.set_xlabel("trial (ranked)")
    else:
        groups: dict = {}
        for outcome in scored:
            groups.setdefault(outcome.values[colour_by] if colour_by else None, []).append(outcome)
        for key, outcomes in sorted(groups.items(), key=lambda item: str(item[0])):
            label = f"{colour_by} = {key}" if colour_by else None
            axes.scatter(
                [o.values[x_dimension.path] for o in outcomes], [o.metric for o in outcomes], label=label, s=36
            )
        if x_dimension.kind == "loguniform" or _spans_decades([o.values[x_dimension.path] for o in ranked]):
            axes.set_xscale("log")
        axes.set_xlabel(x_dimension.path)
        if colour_by:
            axes.legend(fontsize="small")
    axes.set_ylabel(metric)
    title = f"{len(ranked)} trials"
    axes.set_title(title + (f" ({failed} failed or diverged, not shown)" if failed else ""))
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _spans_decades(values: list) -> bool:
    positive = [v for v in values if isinstance(v, (int, float)) and v > 0]
    return bool(positive) and max(positive) / min(positive) >= 10
