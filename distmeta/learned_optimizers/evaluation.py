"""Running an optimiser on held-out optimisees, and tuning the hand-designed baselines fairly.

`loss_curve` trains a task with a rule and records the full loss before the first step and
after every step; `loss_curves` does it for many tasks at once, under `torch.func.vmap`.
`tune_learning_rate` picks a baseline's learning rate from a grid by the mean final loss on
tuning tasks (meta-train seeds, never the test seeds the results are reported on), the same
search for every baseline.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch.func import grad, vmap

from distmeta.algorithms.update_rules import Params, UpdateRule
from distmeta.tasks.optimisee import OptimiseeFamily


@torch.no_grad()
def loss_curve(rule: UpdateRule, family: OptimiseeFamily, seed: int, steps: int) -> torch.Tensor:
    """(steps + 1,) full losses of task `seed` trained by `rule` (already bound), from step 0."""
    params, task = family.init(seed)
    state = rule.init(params)
    losses = [family.full_loss(params, task)]
    for step in range(steps):
        step_tensor = torch.tensor(step)
        grads = grad(lambda p: family.loss(p, task, step_tensor))(params)
        params, state = rule.update(grads, state, params)
        losses.append(family.full_loss(params, task))
    return torch.stack(losses)


def loss_curves(rule: UpdateRule, family: OptimiseeFamily, seeds: Sequence[int], steps: int) -> torch.Tensor:
    """(len(seeds), steps + 1) loss curves, one per task seed: `loss_curve` of each seed, with
    every task trained at once (`batched_loss_curves`; one call a step instead of one per task
    made a learned rule's evaluation 5-25x slower than needed)."""
    return batched_loss_curves(lambda _: rule, [0.0], family, seeds, steps)[0]


def log10_mean_final_loss(curves: torch.Tensor) -> float:
    """log10 of the mean over tasks of the last loss (inf when any task diverged to NaN/inf)."""
    final = curves[:, -1]
    if not torch.isfinite(final).all():
        return math.inf
    return math.log10(final.mean().item())


def tune_learning_rate(
    make_rule: Callable[[float], UpdateRule],
    family: OptimiseeFamily,
    seeds: Sequence[int],
    steps: int,
    grid: Sequence[float],
) -> tuple[float, dict[float, float]]:
    """The rate of `grid` whose rule reaches the lowest mean final loss on `seeds`, and the
    log10 mean final loss at every rate (inf where it diverged)."""
    scores = {rate: log10_mean_final_loss(loss_curves(make_rule(rate), family, seeds, steps)) for rate in grid}
    best = min(scores, key=lambda rate: (scores[rate], rate))
    if math.isinf(scores[best]):
        raise ValueError(f"every learning rate of the grid {list(grid)} diverged")
    return best, scores


@torch.no_grad()
def batched_loss_curves(
    make_rule: Callable[[torch.Tensor], UpdateRule],
    rates: Sequence[float],
    family: OptimiseeFamily,
    seeds: Sequence[int],
    steps: int,
) -> torch.Tensor:
    """(len(rates), len(seeds), steps + 1) loss curves of every rate on every task, all of them
    trained at once under `torch.func.vmap`: `loss_curves` of `make_rule(rate)` for each rate,
    in one batched loop (each step is then one call over every task instead of one per task,
    which is what makes tuning a baseline on a grid affordable on a CPU).

    `make_rule(rate)` is called with the rate as a 0-d tensor inside the vmap; a learned rule
    that ignores it (`lambda _: rule`) gives its curves with `rates=[0.0]`.
    """
    tasks = [family.init(seed) for seed in seeds]
    device = next(iter(tasks[0][0].values())).device
    grid = torch.tensor(list(rates), dtype=torch.get_default_dtype(), device=device).repeat_interleave(len(seeds))
    params = _stacked([tasks[index % len(seeds)][0] for index in range(len(grid))])
    data = _stacked([tasks[index % len(seeds)][1] for index in range(len(grid))])

    def init(rate, params):
        return make_rule(rate).init(params)

    def update(rate, params, state, data, step):
        grads = grad(lambda p: family.loss(p, data, step))(params)
        return make_rule(rate).update(grads, state, params)

    state = vmap(init)(grid, params)
    full_loss = vmap(family.full_loss)
    update_all = vmap(update, in_dims=(0, 0, 0, 0, None))
    losses = [full_loss(params, data)]
    for step in range(steps):
        params, state = update_all(grid, params, state, data, torch.tensor(step))
        losses.append(full_loss(params, data))
    return torch.stack(losses, dim=1).reshape(len(rates), len(seeds), steps + 1)


def _stacked(dicts: list[Params]) -> Params:
    return {name: torch.stack([values[name] for values in dicts]) for name in dicts[0]}
