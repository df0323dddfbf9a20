"""Prefetching on a CPU: sinusoid MAML steps of 1,000 tasks in one process, train.prefetch on against off.

    nice -n 10 python benchmarks/prefetch.py [--rounds 6] [--steps 15] [--json benchmarks/results/prefetch.json]

Each setting of torch threads (1, as a Ray worker has, and torch's default) alternates rounds of
`--steps` meta-steps (`trainer.meta_step`) with the next step's tasks drawn in a background
thread (`training.prefetch`) and without, so that both see the same drift of a shared machine;
the figure is the median ms/step over a setting's pooled steps, and off / on the speed-up.
The sampling alone (one meta-batch drawn in line) is timed the same way, for scale.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from distmeta.config import load_config
from distmeta.experiment import build_experiment
from distmeta.training.prefetch import BatchPrefetcher
from distmeta.training.trainer import initial_state, meta_batch, meta_step, sampled_tasks

ROOT = Path(__file__).resolve().parents[1]
SETTING = [
    "task.name=sinusoid",
    "algorithm.name=maml",
    "train.meta_batch_size=1000",
    "train.compile=off",
    "train.device=cpu",
]


def round_ms(experiment, state, steps: int, prefetch: bool) -> list[float]:
    """ms of each of `steps` meta-steps from `state`, the tasks drawn ahead or in line."""
    end = state.step + steps + 1

    def timed(batches) -> list[float]:
        meta_step(experiment, state, batches=batches)  # warm-up; with prefetch, starts drawing ahead
        times = []
        for _ in range(steps):
            started = time.perf_counter()
            meta_step(experiment, state, batches=batches)
            times.append(1000 * (time.perf_counter() - started))
        return times

    if not prefetch:
        return timed(None)
    with BatchPrefetcher(lambda step: sampled_tasks(experiment, step), experiment.device, end) as ahead:
        return timed(ahead)


def sampling_ms(experiment, repeats: int) -> list[float]:
    times = []
    for step in range(repeats):
        started = time.perf_counter()
        meta_batch(experiment, step)
        times.append(1000 * (time.perf_counter() - started))
    return times


def measure(threads: int, rounds: int, steps: int) -> dict:
    torch.set_num_threads(threads)
    experiment = build_experiment(load_config(None, SETTING))
    states = {"on": initial_state(experiment), "off": initial_state(experiment)}
    pooled: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(rounds):
        for name in ("off", "on"):
            pooled[name] += round_ms(experiment, states[name], steps, prefetch=name == "on")
    on, off = statistics.median(pooled["on"]), statistics.median(pooled["off"])
    return {
        "torch_threads": threads,
        "prefetch_on_ms_per_step": on,
        "prefetch_off_ms_per_step": off,
        "off_over_on": off / on,
        "sampling_in_line_ms": statistics.median(sampling_ms(experiment, 3 * steps)),
        "steps_per_setting": len(pooled["on"]),
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "prefetch.json")
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    results = [measure(threads, args.rounds, args.steps) for threads in sorted({1, default_threads})]
    for r in results:
        print(
            f"torch threads {r['torch_threads']}: prefetch on {r['prefetch_on_ms_per_step']:.1f} ms/step, "
            f"off {r['prefetch_off_ms_per_step']:.1f} ms/step (off/on {r['off_over_on']:.3f}); "
            f"sampling in line {r['sampling_in_line_ms']:.2f} ms"
        )
    machine = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    command = " ".join(["nice -n 10 python", "benchmarks/prefetch.py", *sys.argv[1:]])
    result = {"command": command, "setting": SETTING, "machine": machine, "results": results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
