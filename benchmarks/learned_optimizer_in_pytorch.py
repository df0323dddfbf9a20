"""A learned optimiser as a `torch.optim.Optimizer` in a plain PyTorch loop, on the CPU and on a GPU.

    python benchmarks/learned_optimizer_in_pytorch.py [--devices cpu cuda] [--steps 1000] [--hidden 20 40 1024]

What the README's snippet claims, measured: `LearnedOptimizer` with the LSTM and MLP rules that
`benchmarks/learned_optimizer_digits.py` meta-trained (their `.pt` files in benchmarks/results/)
trains a fresh `torch.nn.Sequential` classifier, 64 - hidden (sigmoid) - 10, on scikit-learn's 8x8
digits in the usual `zero_grad()` / `backward()` / `step()` loop, minibatches of 128, next to
`torch.optim.Adam` at the rate tuned for that benchmark (from its JSON). Each model starts from
held-out task `--seed` of the digits family (`distmeta.tasks.digits`: its starting weights and its
order of the held-out images), so the learned rules meet a task they never saw, and at widths
other than the 20 units they were meta-trained on.

For each device, width and optimiser it reports the loss on all of the held-out images at steps 10,
100 and the last, and ms per step (wall time of the loop, GPU synchronised, over the steps after
the first 10). Where a width is small enough (`--reference-up-to`), the loop's losses are checked
against the functional evaluation the benchmarks report on (`evaluation.batched_loss_curves` on the
CPU, in float64 for both): equal to float64 rounding means the Optimizer class is the rule that was
meta-trained. Writes benchmarks/results/learned_optimizer_in_pytorch.json (`--json`) and prints a table.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learned_optimizer_common import machine, test_seeds  # noqa: E402

from distmeta.learned_optimizers import LearnedOptimizer, make_rule  # noqa: E402
from distmeta.learned_optimizers.evaluation import batched_loss_curves  # noqa: E402
from distmeta.tasks.digits import DigitsMLPFamily  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DIGITS = RESULTS / "learned_optimizer_digits.json"
LEARNED = ("lstm", "mlp")
CHECKED_STEPS = (1, 10, 100)
"""The steps at which the float64 loop is compared with the functional rule."""
NUDGE = 1e-14
"""The relative change of the starting weights that measures how far rounding alone moves a loss."""
ROUNDING_FLOOR, ROUNDING_FACTOR = 1e-9, 100
"""The loop matches the functional rule when, at every checked step, its relative difference is at
most max(ROUNDING_FLOOR, ROUNDING_FACTOR x the functional rule's own response to a NUDGE)."""


def build_model(params: dict[str, torch.Tensor], device: str) -> torch.nn.Sequential:
    """The classifier of `distmeta.tasks.sigmoid_mlp` as a torch.nn module, at `params`."""
    hidden, inputs = params["hidden.weight"].shape
    model = torch.nn.Sequential(
        torch.nn.Linear(inputs, hidden), torch.nn.Sigmoid(), torch.nn.Linear(hidden, params["output.bias"].numel())
    )
    with torch.no_grad():
        model[0].weight.copy_(params["hidden.weight"])
        model[0].bias.copy_(params["hidden.bias"])
        model[2].weight.copy_(params["output.weight"])
        model[2].bias.copy_(params["output.bias"])
    return model.to(device)


@functools.cache
def trained_meta_parameters(name: str) -> dict[str, torch.Tensor]:
    """The meta-parameters `benchmarks/learned_optimizer_digits.py` trained for rule `name`, read once."""
    return torch.load(RESULTS / f"learned_optimizer_digits_{name}.pt")


def make_optimizer(name: str, model: torch.nn.Module, adam_rate: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=adam_rate)
    return LearnedOptimizer(model.parameters(), make_rule(name), trained_meta_parameters(name))


def train(
    name: str, family: DigitsMLPFamily, seed: int, steps: int, device: str, adam_rate: float, dtype: torch.dtype
) -> dict:
    """Train task `seed` of `family` with optimiser `name` in a plain PyTorch loop on `device`:
    the full loss at steps 0, 1, 10, 100 and `steps`, and the ms per step after the first 10."""
    params, task = family.init(seed)
    model = build_model(params, device).to(dtype)
    optimizer = make_optimizer(name, model, adam_rate)
    images, labels = family.images.to(device, dtype), family.labels.to(device)
    order, batch = task["order"].to(device), torch.arange(family.batch_size, device=device)
    recorded = sorted({0, 1, 10, 100, steps} & set(range(steps + 1)))

    def full_loss() -> float:
        with torch.no_grad():
            return torch.nn.functional.cross_entropy(model(images), labels).item()

    losses, step_seconds = {0: full_loss()}, []
    for step in range(steps):
        started = time.perf_counter()
        indices = order.gather(0, (step * family.batch_size + batch) % len(labels))
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(images[indices]), labels[indices])
        loss.backward()
        optimizer.step()
        if device != "cpu":
            torch.cuda.synchronize()
        step_seconds.append(time.perf_counter() - started)
        if step + 1 in recorded:
            losses[step + 1] = full_loss()
    timed = step_seconds[10:] or step_seconds
    return {
        "losses": {str(step): loss for step, loss in losses.items()},
        "ms_per_step": 1000 * statistics.median(timed),
        "ms_per_step_mean": 1000 * statistics.fmean(timed),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def functional_losses(name: str, family: DigitsMLPFamily, seed: int, nudge: float = 0.0) -> dict[str, float]:
    """The same task trained by the functional rule (what the benchmarks evaluate), float64 on the
    CPU, for max(CHECKED_STEPS) steps; with `nudge`, from starting weights scaled by 1 + nudge."""
    meta_params = {k: v.double() for k, v in trained_meta_parameters(name).items()}
    rule = make_rule(name).bind(meta_params)
    curve = batched_loss_curves(lambda _: rule, [0.0], InFloat64(family, nudge), [seed], max(CHECKED_STEPS))[0, 0]
    return {str(step): curve[step].item() for step in CHECKED_STEPS}


def reference_check(name: str, family: DigitsMLPFamily, seed: int, device: str, adam_rate: float) -> dict:
    """The float64 loop on `device` against the functional rule: the relative difference at each
    of CHECKED_STEPS, next to how far a NUDGE of the starting weights moves the functional rule
    there (a learned rule can amplify rounding: the LSTM turns 1e-14 into tens of percent by step
    100 near the minimum, the MLP rule does not), and whether every difference is within rounding."""
    reference = functional_losses(name, family, seed)
    nudged = functional_losses(name, family, seed, NUDGE)
    looped = train(name, family, seed, max(CHECKED_STEPS), device, adam_rate, torch.float64)["losses"]
    difference = {step: abs(looped[step] - value) / abs(value) for step, value in reference.items()}
    sensitivity = {step: abs(nudged[step] - value) / abs(value) for step, value in reference.items()}
    within = all(difference[s] <= max(ROUNDING_FLOOR, ROUNDING_FACTOR * sensitivity[s]) for s in reference)
    return {
        "float64_relative_difference": difference,
        "rounding_sensitivity": sensitivity,
        "matches_functional": within,
    }


class InFloat64:
    """`family`'s tasks with their starting weights (scaled by 1 + `nudge`) and images in float64."""

    def __init__(self, family: DigitsMLPFamily, nudge: float = 0.0):
        self.family = copy.copy(family)
        self.family.images = family.images.double()
        self.split = family.split
        self.nudge = nudge

    def init(self, seed: int):
        params, task = self.family.init(seed)
        return {name: value.double() * (1 + self.nudge) for name, value in params.items()}, task

    def loss(self, params, task, step):
        return self.family.loss(params, task, step)

    def full_loss(self, params, task):
        return self.family.full_loss(params, task)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    parser.add_argument("--devices", nargs="+", default=default_devices, choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--hidden", type=int, nargs="+", default=[20, 40, 1024])
    parser.add_argument("--optimizers", nargs="+", default=["lstm", "mlp", "adam"], choices=["lstm", "mlp", "adam"])
    parser.add_argument("--seed", type=int, default=0, help="which held-out task (starting point, image order)")
    parser.add_argument(
        "--reference-up-to", type=int, default=40, help="widest model checked against the functional rule"
    )
    parser.add_argument("--json", default=str(RESULTS / "learned_optimizer_in_pytorch.json"))
    args = parser.parse_args()
    if "cuda" in args.devices and not torch.cuda.is_available():
        parser.error(f"--devices cuda: torch {torch.__version__} sees no GPU here")
    torch.set_num_threads(1)
    adam_rate = json.loads(DIGITS.read_text())["results"]["adam"]["h20_100"]["learning_rate"]
    task_seed = test_seeds(args.seed + 1)[args.seed]
    rows = []
    started = time.perf_counter()
    for hidden in args.hidden:
        family = DigitsMLPFamily("test", hidden=hidden)
        for name in args.optimizers:
            for device in args.devices:
                result = train(name, family, task_seed, args.steps, device, adam_rate, torch.float32)
                row = {"device": device, "hidden": hidden, "optimizer": name, **result}
                if name in LEARNED and hidden <= args.reference_up_to:
                    row |= reference_check(name, family, task_seed, device, adam_rate)
                rows.append(row)
                print_row(row)
    report = {
        "machine": machine("cuda" if "cuda" in args.devices else "cpu"),
        "command": "python benchmarks/learned_optimizer_in_pytorch.py " + " ".join(sys.argv[1:]),
        "steps": args.steps,
        "adam_learning_rate": adam_rate,
        "reference": {"steps": CHECKED_STEPS, "nudge": NUDGE, "floor": ROUNDING_FLOOR, "factor": ROUNDING_FACTOR},
        "seconds": time.perf_counter() - started,
        "rows": rows,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


def print_row(row: dict) -> None:
    check = ""
    if "matches_functional" in row:
        difference, sensitivity = row["float64_relative_difference"], row["rounding_sensitivity"]
        steps_checked = ", ".join(f"{difference[s]:.0e} ({sensitivity[s]:.0e})" for s in difference)
        verdict = "ok" if row["matches_functional"] else "DIFFERS"
        check = f"  float64 vs functional at {CHECKED_STEPS}: {steps_checked} -> {verdict}"
    shown = "  ".join(f"step {step} {loss:.4f}" for step, loss in row["losses"].items() if int(step) >= 10)
    print(
        f"{row['device']:<5} hidden {row['hidden']:>5}  {row['optimizer']:<5} loss {shown}  "
        f"{row['ms_per_step']:.2f} ms/step{check}",
        flush=True,
    )


if __name__ == "__main__":
    main()
