"""What the learned-optimiser benchmarks share: their common options, the meta-training of a
learned optimiser, the tuned baselines, the seeds, and the summary of a set of loss curves (mean
over held-out tasks with a 95% interval).

Every baseline gets its learning rate from one log grid, searched the same way for all of
them, on tuning tasks drawn from the meta-train seeds far past any meta-training step (never
the meta-test tasks the results are reported on).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import time
from pathlib import Path

import torch

from distmeta.algorithms.update_rules import SGD, UpdateRule
from distmeta.learned_optimizers.evaluation import batched_loss_curves, log10_mean_final_loss
from distmeta.learned_optimizers.hand_designed import Adam, Momentum, RMSprop
from distmeta.learned_optimizers.meta_training import MetaTrainingSettings, meta_train
from distmeta.tasks.optimisee import OptimiseeFamily, optimisee_seed

BASELINES = {"sgd": SGD, "momentum": Momentum, "rmsprop": RMSprop, "adam": Adam}
TUNING_STEP = 10**6
"""The meta-step index of the tuning tasks' seeds: far past any meta-training step."""
T_975 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 8: 2.365, 10: 2.262}
"""Student t quantiles (0.975) by number of tasks: the 95% interval of a mean over few tasks."""


def common_arguments(description: str, meta_steps: int, meta_lr: float, seeds_help: str) -> argparse.ArgumentParser:
    """A parser with the options both benchmarks take (the learned optimisers, their meta-training
    and the number of test tasks), at this benchmark's defaults."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--optimizers", nargs="+", default=["lstm", "mlp"], choices=["lstm", "mlp"])
    parser.add_argument("--meta-steps", type=int, default=meta_steps)
    parser.add_argument("--meta-lr", type=float, default=meta_lr)
    parser.add_argument("--truncation-length", type=int, default=20)
    parser.add_argument(
        "--meta-loss", default="mean", choices=["mean", "final"], help="the truncation's mean loss, or its last"
    )
    parser.add_argument("--seeds", type=int, default=5, help=seeds_help)
    return parser


def train_learned(
    settings: MetaTrainingSettings, family: OptimiseeFamily, json_path: Path, log_every: int
) -> tuple[UpdateRule, dict]:
    """Meta-train `settings.optimizer` on `family` in this process, printing its meta-loss every
    `log_every` steps, and save its meta-parameters next to the results (`<json stem>_<optimiser>.pt`).
    Returns the trained rule, bound, and its entry of the results."""
    name = settings.optimizer
    trained = meta_train(
        settings,
        family,
        log=lambda step, loss: print(f"  {name} meta-step {step}: meta-loss {loss:.3f}", flush=True),
        log_every=log_every,
    )
    # saved from the CPU, so that a GPU-trained rule loads anywhere
    on_cpu = {key: value.cpu() for key, value in trained.meta_params.items()}
    torch.save(on_cpu, json_path.with_name(f"{json_path.stem}_{name}.pt"))
    entry = {
        "kind": "learned",
        "settings": dataclasses.asdict(settings),
        "meta_training_seconds": trained.seconds,
        "skipped_meta_steps": trained.skipped_steps,
    }
    return trained.rule.bind(trained.meta_params), entry


def log_grid(low: float, high: float, per_decade: int = 4) -> list[float]:
    """10^low .. 10^high, `per_decade` rates per decade."""
    return [10 ** (exponent / per_decade) for exponent in range(round(low * per_decade), round(high * per_decade) + 1)]


def test_seeds(count: int) -> list[int]:
    return [optimisee_seed(0, "test", 0, index) for index in range(count)]


def tuning_seeds(count: int) -> list[int]:
    return [optimisee_seed(0, "train", TUNING_STEP, index) for index in range(count)]


def summary(curves: torch.Tensor, step: int) -> dict:
    """The mean loss at `step` over tasks with the 95% interval of that mean (Student t), and
    their log10; a task that diverged (NaN or inf) makes the whole entry diverged."""
    losses = curves[:, step].double()
    if not torch.isfinite(losses).all():
        return {
            "mean": math.inf,
            "log10_mean": math.inf,
            "interval": [math.inf, math.inf],
            "log10_interval": [math.inf, math.inf],
            "diverged": True,
        }
    mean, count = losses.mean().item(), len(losses)
    half = T_975.get(count, 1.96) * losses.std().item() / math.sqrt(count) if count > 1 else 0.0
    return {
        "mean": mean,
        "log10_mean": math.log10(mean),
        "interval": [mean - half, mean + half],
        "log10_interval": [math.log10(mean - half) if mean - half > 0 else None, math.log10(mean + half)],
        "diverged": False,
    }


def measure(rule: UpdateRule, family: OptimiseeFamily, seeds: list[int], steps: list[int]) -> tuple[dict, torch.Tensor]:
    """`rule` (bound) on the tasks `seeds` of `family` for max(steps) steps: a summary at each
    of `steps` (with each task's loss there) and the wall time; and the loss curves."""
    started = time.perf_counter()
    curves = batched_loss_curves(lambda _: rule, [0.0], family, seeds, max(steps))[0].cpu()
    result = {f"step_{step}": summary(curves, step) | {"losses": curves[:, step].tolist()} for step in steps}
    return result | {"seconds": time.perf_counter() - started}, curves


def tuned_baseline(name: str, family: OptimiseeFamily, seeds: list[int], steps: int, grid: list[float]) -> dict:
    """Baseline `name` at the rate of `grid` with the lowest mean loss after `steps` steps on
    `seeds` (as `tune_learning_rate`, every rate and task trained at once), with every rate's
    log10 mean final loss (inf where it diverged)."""
    started = time.perf_counter()
    curves = batched_loss_curves(BASELINES[name], grid, family, seeds, steps)
    scores = {rate: log10_mean_final_loss(curves[index]) for index, rate in enumerate(grid)}
    rate = min(scores, key=lambda rate: (scores[rate], rate))
    if math.isinf(scores[rate]):
        raise ValueError(f"{name}: every learning rate of the grid diverged")
    return {
        "learning_rate": rate,
        "tuning_steps": steps,
        "tuning_seconds": time.perf_counter() - started,
        "tuning_log10": {f"{r:g}": s for r, s in scores.items()},
    }


def machine(device: torch.device | str = "cpu") -> dict:
    """Where the figures were measured: the platform, torch, its threads and, on a GPU, which."""
    described = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "device": str(device),
    }
    if torch.device(device).type == "cuda":
        described["gpu"] = torch.cuda.get_device_name(device)
    return described


def plot_curves(panels: dict[str, dict[str, torch.Tensor]], path: Path, meta_horizon: int, ylabel: str) -> None:
    """One panel per entry of `panels` (title -> optimiser -> (tasks, steps + 1) curves): the mean
    loss over the tasks, with a band from the lowest to the highest task, on log axes."""
    import matplotlib

    matplotlib.use("Agg")  # no screen needed
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), sharey=True, squeeze=False)
    for axis, (title, curves) in zip(axes[0], panels.items()):
        for name, curve in curves.items():
            steps = torch.arange(1, curve.shape[1])
            (line,) = axis.plot(steps, curve[:, 1:].mean(0), label=name, linewidth=2 if name in ("lstm", "mlp") else 1)
            axis.fill_between(
                steps, curve[:, 1:].min(0).values, curve[:, 1:].max(0).values, color=line.get_color(), alpha=0.15
            )
        axis.axvline(meta_horizon, color="grey", linestyle=":", linewidth=1)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel(f"step (meta-trained on {meta_horizon})")
        axis.set_title(title)
    axes[0][0].set_ylabel(ylabel)
    axes[0][0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
