"""Learned optimisers against tuned hand-designed ones on a small MLP classifier of 8x8 digits.

    python benchmarks/learned_optimizer_digits.py [--meta-steps 300] [--optimizers lstm mlp]

The MNIST experiment of Andrychowicz et al. (2016), scaled to scikit-learn's bundled digits
(`distmeta.tasks.digits`: a 64-20-10 sigmoid MLP, cross-entropy, minibatches of 128; the images
split 80/20 between meta-train and held-out tasks). Each learned optimiser is meta-trained in
this process on 100-step unrolls of meta-train tasks (truncated backprop through truncations
of 20 steps, mean of the log losses, Adam at 1e-2). It is then run on 5 held-out tasks (held-out
images, held-out seeds) in four settings: the meta-training horizon (100 steps) and a horizon
10x longer (1,000 steps), each on the MLP it was meta-trained on (20 hidden units) and on one
2x wider (40). SGD, momentum 0.9, RMSprop and Adam get, in every setting, their best learning
rate of one log grid for that setting's horizon and width, tuned on 5 meta-train tasks. A
setting reports the mean training loss (on all of the task's images) over the held-out tasks
with a 95% interval (Student t), and whether any task's loss became NaN or infinite.

Targets (issue 15): the learned optimiser below the best-tuned Adam at 100 and at 1,000 steps,
no NaN in any task, and no divergence at 1,000 steps or on the wider MLP. Writes
benchmarks/results/learned_optimizer_digits.json (and the meta-parameters,
`..._<optimiser>.pt`, and the loss curves, `learned_optimizer_digits.png`) and prints the table.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learned_optimizer_common import (  # noqa: E402
    BASELINES,
    common_arguments,
    log_grid,
    machine,
    measure,
    plot_curves,
    test_seeds,
    train_learned,
    tuned_baseline,
    tuning_seeds,
)

from distmeta.learned_optimizers.meta_training import MetaTrainingSettings  # noqa: E402
from distmeta.tasks.digits import DigitsMLPFamily  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GRID = log_grid(-3, 1)
"""Learning rates 10^-3 .. 10^1, quarter decades: every baseline's best lies inside it."""


def evaluation_settings(long_horizon: int = 1000) -> dict[str, tuple[int, int]]:
    """Name -> (hidden units, steps). Meta-training sees 20 hidden units and 100 steps;
    `long_horizon` is the 10x horizon (smaller only for a quick check of the script)."""
    return {"h20_100": (20, 100), "h20_long": (20, long_horizon), "h40_100": (40, 100), "h40_long": (40, long_horizon)}


def main() -> None:
    parser = common_arguments(
        __doc__.splitlines()[0], meta_steps=300, meta_lr=1e-2, seeds_help="held-out tasks (and tuning tasks)"
    )
    parser.add_argument("--unroll-length", type=int, default=100)
    parser.add_argument("--long-horizon", type=int, default=1000, help="the steps of the long settings")
    parser.add_argument("--json", default=str(RESULTS / "learned_optimizer_digits.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    evaluated = evaluation_settings(args.long_horizon)
    started = time.perf_counter()
    held_out, tuning = test_seeds(args.seeds), tuning_seeds(args.seeds)
    results: dict[str, dict] = {}
    curves: dict[str, dict[str, torch.Tensor]] = {setting: {} for setting in evaluated}
    for name in args.optimizers:
        settings = MetaTrainingSettings(
            optimizer=name,
            unroll_length=args.unroll_length,
            truncation_length=args.truncation_length,
            meta_loss=args.meta_loss,
            meta_steps=args.meta_steps,
            meta_lr=args.meta_lr,
            log_loss=True,
        )
        rule, results[name] = train_learned(settings, DigitsMLPFamily("train"), Path(args.json), log_every=50)
        for setting, (hidden, steps) in evaluated.items():
            results[name][setting], curves[setting][name] = measure(
                rule, DigitsMLPFamily("test", hidden=hidden), held_out, measured_steps(steps)
            )
    for name in BASELINES:
        results[name] = {"kind": "baseline"}
        for setting, (hidden, steps) in evaluated.items():
            tuned = tuned_baseline(name, DigitsMLPFamily("train", hidden=hidden), tuning, steps, GRID)
            measured, curves[setting][name] = measure(
                BASELINES[name](tuned["learning_rate"]),
                DigitsMLPFamily("test", hidden=hidden),
                held_out,
                measured_steps(steps),
            )
            results[name][setting] = tuned | measured
            print(
                f"  {name} {setting}: lr {tuned['learning_rate']:g}, loss {measured[f'step_{steps}']['mean']:.4f}",
                flush=True,
            )
    report = {
        "machine": machine(),
        "command": "python benchmarks/learned_optimizer_digits.py " + " ".join(sys.argv[1:]),
        "problem": "64-hidden-10 sigmoid MLP on scikit-learn's 8x8 digits, cross-entropy, minibatches of 128; "
        "loss on all of a held-out task's images",
        "settings": {setting: {"hidden": hidden, "steps": steps} for setting, (hidden, steps) in evaluated.items()},
        "meta_training": {"hidden": 20, "steps": args.unroll_length},
        "test_seeds": held_out,
        "grid": GRID,
        "targets": targets(results, args.optimizers, evaluated),
        "seconds": time.perf_counter() - started,
        "results": results,
    }
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    plot_curves(
        {f"{evaluated[setting][0]} hidden units": curves[setting] for setting in ("h20_long", "h40_long")},
        Path(args.json).with_suffix(".png"),
        args.unroll_length,
        "training loss, held-out tasks",
    )
    print_table(results, evaluated)


def measured_steps(steps: int) -> list[int]:
    return [0, 10, 100] + ([steps] if steps > 100 else [])


def targets(results: dict, learned: list[str], evaluated: dict[str, tuple[int, int]]) -> dict:
    """Per learned optimiser: below tuned Adam at 100 and at the long horizon (20 hidden units);
    no NaN or inf in any task; and no divergence: in every setting the mean loss ends below
    where it started, and on the long horizon not above where it was at step 100."""
    met = {}
    for name in learned:
        result = results[name]
        beats = {
            setting: result[setting][f"step_{steps}"]["mean"] < results["adam"][setting][f"step_{steps}"]["mean"]
            for setting, (_, steps) in evaluated.items()
        }
        finite = all(
            not summary["diverged"]
            for setting in evaluated
            for key, summary in result[setting].items()
            if key.startswith("step_")
        )
        settles = finite and all(
            result[setting][f"step_{steps}"]["mean"] < result[setting]["step_0"]["mean"]
            and result[setting][f"step_{steps}"]["mean"] <= result[setting]["step_100"]["mean"]
            for setting, (_, steps) in evaluated.items()
        )
        met[name] = {
            "beats_adam": beats,
            "beats_adam_at_100_and_long": beats["h20_100"] and beats["h20_long"],
            "no_nan": finite,
            "no_divergence": settles,
        }
    return met


def print_table(results: dict, evaluated: dict[str, tuple[int, int]]) -> None:
    print("\nmean loss over the held-out tasks (95% interval); baselines at their best rate for each setting")
    print(f"{'optimiser':<10} " + " ".join(f"{setting:>24}" for setting in evaluated))
    for name, result in results.items():
        cells = []
        for setting, (_, steps) in evaluated.items():
            entry = result[setting][f"step_{steps}"]
            cells.append(
                "diverged"
                if entry["diverged"]
                else f"{entry['mean']:.4f} [{entry['interval'][0]:.4f}, {entry['interval'][1]:.4f}]"
            )
        print(f"{name:<10} " + " ".join(f"{cell:>24}" for cell in cells))


if __name__ == "__main__":
    main()
