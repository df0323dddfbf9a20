"""`distmeta eval RUN` for a learned optimiser: the trained rule against tuned hand-designed optimisers.

Every optimiser trains the same held-out optimisee tasks (meta-test seeds) for `steps`
steps (by default 10x the unroll meta-training saw). Each baseline (SGD, SGD with momentum
0.9, RMSprop, Adam) first gets its best learning rate from one log grid, picked by the mean
final loss after one unroll's length of steps on `tuning_tasks` meta-train tasks (seeds no
meta-step draws and no test task shares): the same search for every baseline. Reported
per optimiser: log10 of the mean loss at step 10, at the unroll length and at the end,
with a 95% interval over tasks; the steps its mean loss needs to reach a target (the best
tuned baseline's mean loss at the unroll length); and its wall time. Written as a table, a
JSON file and a PNG of the loss curves (mean over tasks, band from the lowest to the highest).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from distmeta.algorithms.update_rules import SGD, Params
from distmeta.config import Config
from distmeta.errors import ConfigError
from distmeta.learned_optimizer_runs.settings import eval_steps, optimisee_family
from distmeta.learned_optimizer_runs.training import one_torch_thread
from distmeta.learned_optimizers.evaluation import loss_curves, tune_learning_rate
from distmeta.learned_optimizers.hand_designed import Adam, Momentum, RMSprop
from distmeta.learned_optimizers.rules import make_rule
from distmeta.tasks.optimisee import optimisee_seed
from distmeta.training.progress import column_table

BASELINES = {"sgd": SGD, "momentum": Momentum, "rmsprop": RMSprop, "adam": Adam}
GRID = tuple(10 ** (exponent / 4) for exponent in range(-10, 5))
"""10^-2.5 .. 10^1 in quarter decades: every baseline's learning-rate grid."""
TUNING_STEP = 10**6
"""The meta-step index of the tuning tasks' seeds: past any meta-training step."""
T_975 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262}
"""Student t quantiles for a 95% interval of a mean over n tasks (1.96 beyond 10)."""


@dataclass
class OptimizerResult:
    name: str
    learning_rate: float | None
    """The tuned rate of a baseline; None for the learned optimiser."""
    curves: torch.Tensor
    """(tasks, steps + 1) full losses, from before the first step."""
    seconds: float
    """Wall time of training the held-out tasks (tuning excluded)."""
    tuning: dict[str, float] | None = None
    """log10 mean final loss at every rate of the grid (baselines)."""
    tuning_seconds: float = 0.0


def compare(config: Config, meta_params: Params, tasks: int, steps: int, grid=GRID) -> list[OptimizerResult]:
    """The trained rule and every tuned baseline on `tasks` meta-test tasks for `steps` steps."""
    section = config.algorithm.learned_optimizer
    test_family, train_family = optimisee_family(config, "test"), optimisee_family(config, "train")
    test_seeds = [optimisee_seed(config.seed, "test", 0, index) for index in range(tasks)]
    tuning_seeds = [optimisee_seed(config.seed, "train", TUNING_STEP, index) for index in range(section.tuning_tasks)]
    started = time.perf_counter()
    learned = make_rule(section.rule).bind(meta_params)
    results = [
        OptimizerResult(
            f"learned {section.rule}",
            None,
            loss_curves(learned, test_family, test_seeds, steps),
            time.perf_counter() - started,
        )
    ]
    for name, make in BASELINES.items():
        started = time.perf_counter()
        rate, scores = tune_learning_rate(make, train_family, tuning_seeds, section.unroll_length, grid)
        tuned = time.perf_counter() - started
        started = time.perf_counter()
        curves = loss_curves(make(rate), test_family, test_seeds, steps)
        results.append(
            OptimizerResult(
                name, rate, curves, time.perf_counter() - started, {f"{r:g}": s for r, s in scores.items()}, tuned
            )
        )
    return results


def log10_mean(losses: torch.Tensor) -> dict:
    """log10 of the mean loss over tasks with its 95% interval (t over tasks); inf when any diverged."""
    losses = losses.double()
    if not torch.isfinite(losses).all():
        return {"log10_mean": math.inf, "interval": [math.inf, math.inf], "diverged": True}
    mean, count = losses.mean().item(), losses.numel()
    half = T_975.get(count, 1.96) * losses.std().item() / math.sqrt(count) if count > 1 else 0.0
    low = math.log10(mean - half) if mean - half > 0 else None
    return {
        "log10_mean": math.log10(mean) if mean > 0 else -math.inf,
        "interval": [low, math.log10(mean + half)],
        "diverged": False,
    }


def steps_to_reach(curves: torch.Tensor, target: float) -> int | None:
    """The first step at which the mean loss over tasks is at most `target` (None: never)."""
    mean = curves.double().mean(0)
    reached = torch.nonzero(torch.isfinite(mean) & (mean <= target))
    return int(reached[0]) if len(reached) else None


def checkpoints_of(steps: int, unroll_length: int) -> list[int]:
    """The steps the table reports: 10, the unroll length, and the last, each at most `steps`."""
    return sorted({step for step in (10, unroll_length, steps) if step <= steps})


def report(config: Config, results: list[OptimizerResult], steps: int) -> dict:
    """The JSON record: each optimiser's numbers at the reported steps, the target and who reached it."""
    unroll_length = config.algorithm.learned_optimizer.unroll_length
    at = checkpoints_of(steps, unroll_length)
    baselines = [r for r in results if r.learning_rate is not None]
    target = min(r.curves[:, min(unroll_length, steps)].double().mean().item() for r in baselines)
    entries = {}
    for result in results:
        entries[result.name] = {
            "learning_rate": result.learning_rate,
            "seconds": result.seconds,
            **{f"step_{step}": log10_mean(result.curves[:, step]) for step in at},
            "steps_to_target": steps_to_reach(result.curves, target),
            "final_losses": result.curves[:, -1].tolist(),
            "mean_curve": result.curves.double().mean(0).tolist(),
            **({"tuning_log10": result.tuning, "tuning_seconds": result.tuning_seconds} if result.tuning else {}),
        }
    return {
        "steps": steps,
        "reported_steps": at,
        "target_loss": target,
        "target": f"the best tuned baseline's mean loss at step {min(unroll_length, steps)}",
        "results": entries,
    }


def table(record: dict) -> str:
    """One row per optimiser: rate, log10 mean loss at the reported steps, steps to target, seconds."""
    at = record["reported_steps"]
    headers = ["optimiser", "lr", *[f"log10 loss @{step}" for step in at], "steps to target", "seconds"]
    rows = []
    for name, entry in record["results"].items():
        rate = "learned" if entry["learning_rate"] is None else f"{entry['learning_rate']:.3g}"
        values = [_log10_cell(entry[f"step_{step}"]) for step in at]
        reached = entry["steps_to_target"]
        rows.append([name, rate, *values, "-" if reached is None else str(reached), f"{entry['seconds']:.1f}"])
    return column_table(headers, rows)


def _log10_cell(value: dict) -> str:
    if value["diverged"]:
        return "diverged"
    low, high = value["interval"]
    return f"{value['log10_mean']:.2f} [{'-inf' if low is None else f'{low:.2f}'}, {high:.2f}]"


def write_plot(path: Path, results: list[OptimizerResult], title: str) -> None:
    """Mean loss against steps per optimiser (log scale), with a band from the lowest to the
    highest task's loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for result in results:
        curves = result.curves.double()
        steps = range(curves.shape[1])
        label = result.name if result.learning_rate is None else f"{result.name} (lr {result.learning_rate:.3g})"
        width = 2 if result.learning_rate is None else 1
        (line,) = axes.plot(steps, curves.mean(0).numpy(), label=label, linewidth=width)
        axes.fill_between(
            steps, curves.min(0).values.numpy(), curves.max(0).values.numpy(), color=line.get_color(), alpha=0.15
        )
    axes.set_yscale("log")
    axes.set_xlabel("optimisee step")
    axes.set_ylabel("loss (mean over tasks; band: min .. max)")
    axes.set_title(title)
    axes.legend(fontsize="small")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def evaluate_run(
    payload: dict,
    config: Config,
    tasks: int | None = None,
    steps: int | None = None,
    json_path: Path | None = None,
    plot_path: Path | None = None,
    command: str = "",
    print_fn=print,
) -> dict:
    """`distmeta eval` of a learned-optimiser checkpoint: compare, print the table, write JSON and PNG
    (by default `eval_<task>.json` / `.png` beside the checkpoint's run folder)."""
    section = config.algorithm.learned_optimizer
    tasks = section.eval_tasks if tasks is None else tasks
    steps = eval_steps(config) if steps is None else steps
    if tasks < 1:
        raise ConfigError("--tasks", f"must be at least 1, got {tasks}")
    if steps < 1:
        raise ConfigError("--inner-steps", f"optimisee steps must be at least 1, got {steps}")
    run_dir = run_folder(Path(payload["path"]))
    json_path = json_path or run_dir / f"eval_{config.task.name}.json"
    plot_path = plot_path or json_path.with_suffix(".png")
    print_fn(
        f"{payload['path']}: step {payload['step']}, learned {section.rule} on {config.task.name}; "
        f"{tasks} held-out task(s), {steps} optimisee steps; baselines tuned on {section.tuning_tasks} "
        f"meta-train task(s) over {len(GRID)} learning rates"
    )
    with one_torch_thread():
        results = compare(config, payload["meta_parameters"], tasks, steps)
    record = {
        "command": command,
        "checkpoint": payload["path"],
        "meta_steps": payload["step"],
        "task": config.task.name,
        "rule": section.rule,
        "tasks": tasks,
        "test_seeds": [optimisee_seed(config.seed, "test", 0, index) for index in range(tasks)],
        "grid": list(GRID),
        **report(config, results, steps),
    }
    print_fn(table(record))
    print_fn(f"target: {record['target']} = {record['target_loss']:.4g}")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    write_plot(plot_path, results, f"{config.task.name}: learned {section.rule} vs tuned baselines, {tasks} tasks")
    print_fn(f"results: {json_path}, {plot_path}")
    return record


def run_folder(checkpoint: Path) -> Path:
    """The run folder a checkpoint file lies in (`<run>/checkpoints/` or `<run>/checkpoint_*/checkpoints/`)."""
    folder = checkpoint.parent.parent
    return folder.parent if folder.name.startswith("checkpoint_") else folder
