"""What hand-designed methods reach on the quadratic benchmark's held-out tasks, up to oracles.

    python benchmarks/quadratic_references.py [--entries uniform] [--steps 100]

`benchmarks/learned_optimizer_quadratic.py` asks a learned optimiser for log10 of the mean loss
<= -1.0 after 100 steps on 10-d quadratics (mean over 128 functions of ||W theta - y||^2). This
script measures, on exactly its 5 held-out tasks (the same seeds, in float64), how far methods
that see more than any optimiser in that benchmark get in the same 100 steps:

- `momentum, one setting (oracle)`: heavy ball, its learning rate and momentum both chosen on the
  held-out tasks themselves (the benchmark's tuned momentum picks only the rate, on tuning tasks);
- `momentum, per function (oracle)`: each of the 128 functions gets its own best (rate, momentum)
  of the grid, chosen on its own loss at the last step: a first-order method that knew in advance
  the best constant setting for every function;
- `adam, per function (oracle)`: the same for Adam's learning rate (its betas as PyTorch's);
- `conjugate gradient, per function`: each function's CG on the normal equations, which takes
  inner products across that function's 10 coordinates (a coordinate-wise rule cannot), solving
  a 10-d problem in 10 steps up to rounding.

The learned optimisers and tuned baselines of `learned_optimizer_quadratic[_uniform].json` are put
beside them when that file is there. Writes benchmarks/results/quadratic_references[_uniform].json
and prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learned_optimizer_common import machine, summary, test_seeds  # noqa: E402

from distmeta.tasks.quadratic import QuadraticFamily  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TARGET = -1.0
LEARNING_RATES = [10 ** (k / 8) for k in range(-24, 13)]
"""10^-3 .. 10^1.5, eighth decades: for the gradient of the mean over functions, as the benchmark."""
MOMENTA = [0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995]


def held_out_tasks(entries: str, seeds: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The benchmark's held-out tasks, stacked and in float64: W (T, n, d, d), y (T, n, d), theta0 (T, n, d)."""
    family = QuadraticFamily("test", entries=entries)
    drawn = [family.init(seed) for seed in seeds]
    matrix = torch.stack([task["matrix"] for _, task in drawn]).double()
    target = torch.stack([task["target"] for _, task in drawn]).double()
    theta = torch.stack([params["theta"] for params, _ in drawn]).double()
    return matrix, target, theta


def function_losses(matrix: torch.Tensor, target: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """||W theta - y||^2 of each function, shape theta.shape[:-1]."""
    return ((matrix @ theta.unsqueeze(-1)).squeeze(-1) - target).square().sum(-1)


def mean_loss_gradient(matrix: torch.Tensor, target: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """The gradient of the task's loss (the mean over its n functions) that an optimiser sees."""
    residual = (matrix @ theta.unsqueeze(-1)).squeeze(-1) - target
    functions = theta.shape[-2]
    return 2 * (matrix.transpose(-1, -2) @ residual.unsqueeze(-1)).squeeze(-1) / functions


def heavy_ball_losses(matrix, target, theta, rates: torch.Tensor, momenta: torch.Tensor, steps: int) -> torch.Tensor:
    """Each function's loss after `steps` steps of SGD with momentum (torch.optim.SGD's form:
    v <- m v + g, theta <- theta - lr v), for every (rate, momentum) pair at once: shape
    (pairs, T, n); non-finite where a pair diverged."""
    shape = (-1, 1, 1, 1)
    rates, momenta = rates.view(shape), momenta.view(shape)
    theta = theta.expand(len(rates), *theta.shape).clone()
    velocity = torch.zeros_like(theta)
    for _ in range(steps):
        velocity = momenta * velocity + mean_loss_gradient(matrix, target, theta)
        theta = theta - rates * velocity
    return function_losses(matrix, target, theta)


def adam_losses(matrix, target, theta, rates: torch.Tensor, steps: int, betas=(0.9, 0.999), eps=1e-8) -> torch.Tensor:
    """Each function's loss after `steps` Adam steps (torch.optim.Adam's update) at every rate: (rates, T, n)."""
    rates = rates.view(-1, 1, 1, 1)
    theta = theta.expand(len(rates), *theta.shape).clone()
    first, second = torch.zeros_like(theta), torch.zeros_like(theta)
    for step in range(1, steps + 1):
        gradient = mean_loss_gradient(matrix, target, theta)
        first = betas[0] * first + (1 - betas[0]) * gradient
        second = betas[1] * second + (1 - betas[1]) * gradient.square()
        corrected = first / (1 - betas[0] ** step)
        scale = (second / (1 - betas[1] ** step)).sqrt() + eps
        theta = theta - rates * corrected / scale
    return function_losses(matrix, target, theta)


def conjugate_gradient_losses(matrix, target, theta, steps: int) -> torch.Tensor:
    """Each function's loss after `steps` steps of conjugate gradient on its normal equations
    (W^T W theta = W^T y), one gradient a step; a function already solved to rounding stays put."""
    hessian = matrix.transpose(-1, -2) @ matrix

    def times_hessian(vector: torch.Tensor) -> torch.Tensor:
        return (hessian @ vector.unsqueeze(-1)).squeeze(-1)

    residual = (matrix.transpose(-1, -2) @ target.unsqueeze(-1)).squeeze(-1) - times_hessian(theta)
    direction = residual.clone()
    for _ in range(steps):
        curvature = (direction * times_hessian(direction)).sum(-1, keepdim=True)
        size = (residual * residual).sum(-1, keepdim=True)
        solved = curvature <= 1e-300
        alpha = torch.where(solved, 0.0, size / torch.where(solved, 1.0, curvature))
        theta = theta + alpha * direction
        new_residual = residual - alpha * times_hessian(direction)
        beta = torch.where(solved, 0.0, (new_residual * new_residual).sum(-1, keepdim=True) / size.clamp_min(1e-300))
        direction, residual = new_residual + beta * direction, new_residual
    return function_losses(matrix, target, theta)


def finite_or_inf(losses: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(losses), losses, torch.full_like(losses, math.inf))


def entry(task_means: torch.Tensor, **extra) -> dict:
    """The benchmark's summary (mean over tasks with its 95% interval, log10) of per-task mean losses."""
    return summary(task_means.view(-1, 1), 0) | {"task_means": task_means.tolist()} | extra


def one_setting_oracle(losses: torch.Tensor, settings: list[dict]) -> dict:
    """The single setting with the lowest mean loss over all tasks and functions."""
    means = finite_or_inf(losses).mean(dim=(1, 2))
    best = int(torch.argmin(means))
    return entry(losses[best].mean(-1), setting=settings[best])


def per_function_oracle(losses: torch.Tensor, settings: list[dict]) -> dict:
    """Each function at its own best setting; how many functions picked each setting, and how
    many picked one at an edge of the grid (where a wider grid might have done better)."""
    best = finite_or_inf(losses).min(dim=0)
    picked: dict[str, int] = {}
    for index in best.indices.flatten().tolist():
        key = json.dumps(settings[index], sort_keys=True)
        picked[key] = picked.get(key, 0) + 1
    at_edge = sum(count for key, count in picked.items() if at_grid_edge(json.loads(key)))
    return entry(best.values.mean(-1), settings_picked=picked, functions_at_grid_edge=at_edge)


def at_grid_edge(setting: dict) -> bool:
    return setting["learning_rate"] in (LEARNING_RATES[0], LEARNING_RATES[-1]) or setting.get("momentum") == MOMENTA[-1]


def measure_all(entries: str, seeds: list[int], steps: int) -> dict:
    matrix, target, theta = held_out_tasks(entries, seeds)
    started = time.perf_counter()
    pairs = [(rate, momentum) for momentum in MOMENTA for rate in LEARNING_RATES]
    heavy_ball = heavy_ball_losses(
        matrix,
        target,
        theta,
        torch.tensor([rate for rate, _ in pairs], dtype=torch.float64),
        torch.tensor([momentum for _, momentum in pairs], dtype=torch.float64),
        steps,
    )
    heavy_ball_settings = [{"learning_rate": rate, "momentum": momentum} for rate, momentum in pairs]
    adam = adam_losses(matrix, target, theta, torch.tensor(LEARNING_RATES, dtype=torch.float64), steps)
    adam_settings = [{"learning_rate": rate} for rate in LEARNING_RATES]

    def conjugate_gradient_entry(cg_steps: int) -> dict:
        return entry(conjugate_gradient_losses(matrix, target, theta, cg_steps).mean(-1))

    methods = {
        "start": entry(function_losses(matrix, target, theta).mean(-1)),
        "momentum, one setting (oracle)": one_setting_oracle(heavy_ball, heavy_ball_settings),
        "momentum, per function (oracle)": per_function_oracle(heavy_ball, heavy_ball_settings),
        "adam, one setting (oracle)": one_setting_oracle(adam, adam_settings),
        "adam, per function (oracle)": per_function_oracle(adam, adam_settings),
        "conjugate gradient, per function, 10 steps": conjugate_gradient_entry(10),
        f"conjugate gradient, per function, {steps} steps": conjugate_gradient_entry(steps),
    }
    return {"methods": methods, "conditioning": conditioning(matrix), "seconds": time.perf_counter() - started}


def conditioning(matrix: torch.Tensor) -> dict:
    """How ill-conditioned the functions are: the ratio of W's largest to smallest singular value,
    its median over every function of every task, and its largest in each task."""
    values = torch.linalg.svdvals(matrix)
    ratios = values[..., 0] / values[..., -1]
    return {
        "singular_value_ratio_median": ratios.median().item(),
        "singular_value_ratio_max_per_task": ratios.max(dim=-1).values.tolist(),
    }


def learned_figures(path: Path, steps: int) -> dict:
    """The learned optimisers' and tuned baselines' log10 mean loss at `steps` from the benchmark's JSON."""
    if not path.exists():
        return {}
    report = json.loads(path.read_text())
    found = {}
    for name, result in report.get("results", {}).items():
        at = result.get(f"step_{steps}")
        if at is not None:
            found[name] = {"log10_mean": at["log10_mean"], "log10_interval": at["log10_interval"]}
    return {"file": path.name, "log10_at_steps": found}


def table(report: dict) -> str:
    steps = report["steps"]
    lines = [
        f"| method | log10 mean loss at step {steps} (95% interval) |",
        "|---|---|",
    ]
    for name, result in report["methods"].items():
        low, high = result["log10_interval"]
        interval = f"{low:.2f} .. {high:.2f}" if low is not None else f"below {high:.2f}"
        label = "start (step 0)" if name == "start" else name
        lines.append(f"| {label} | {result['log10_mean']:.2f} ({interval}) |")
    for name, result in report["benchmark"].get("log10_at_steps", {}).items():
        lines.append(f"| {name} (`{report['benchmark']['file']}`) | {result['log10_mean']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", default="normal", choices=["normal", "uniform"])
    parser.add_argument("--seeds", type=int, default=5, help="held-out tasks (the benchmark's first ones)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--json", default=None, help="default: benchmarks/results/quadratic_references[_uniform].json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    suffix = "" if args.entries == "normal" else "_uniform"
    command = "python benchmarks/quadratic_references.py" + ("" if args.entries == "normal" else " --entries uniform")
    measured = measure_all(args.entries, test_seeds(args.seeds), args.steps)
    report = {
        "command": command,
        "entries": args.entries,
        "steps": args.steps,
        "seeds": test_seeds(args.seeds),
        "target_log10": TARGET,
        "grid": {"learning_rates": LEARNING_RATES, "momenta": MOMENTA},
        **measured,
        "benchmark": learned_figures(RESULTS / f"learned_optimizer_quadratic{suffix}.json", args.steps),
        "machine": machine(),
    }
    path = Path(args.json) if args.json else RESULTS / f"quadratic_references{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"wrote {path} ({measured['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
