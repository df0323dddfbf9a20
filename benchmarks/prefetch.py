"""Prefetching on a CPU: sinusoid MAML steps of 1,000 tasks in one process, train.prefetch on against off.

    nice -n 10 python benchmarks/prefetch.py [--rounds 6] [--steps 15] [--threads 1,2] [--json OUT.json]

Each count of torch threads (1, as a Ray worker has, and torch's default) alternates rounds of
`--steps` meta-steps (`trainer.meta_step`) with the next step's tasks drawn in a background
thread (`training.prefetch`) and without, so that both see the same drift of a shared machine;
the figure is the median ms/step over a setting's pooled steps, and off / on the speed-up. A third
variant, prefetch off again, gives the noise floor of a shared machine: off / off again.
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


def spread(times: list[float]) -> list[float]:
    ordered = sorted(times)
    return [ordered[len(ordered) // 10], ordered[(9 * len(ordered)) // 10]]


VARIANTS = ("off", "on", "off (control)")
"""The control is prefetch off again, measured like the others: off / off (control) is the noise floor."""


def measure(threads: int, rounds: int, steps: int) -> dict:
    torch.set_num_threads(threads)
    experiment = build_experiment(load_config(None, SETTING))
    states = {name: initial_state(experiment) for name in VARIANTS}
    pooled: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for round_index in range(rounds):
        shift = round_index % len(VARIANTS)  # each variant first in turn
        for name in VARIANTS[shift:] + VARIANTS[:shift]:
            pooled[name] += round_ms(experiment, states[name], steps, prefetch=name == "on")
    off, on, control = (statistics.median(pooled[name]) for name in VARIANTS)
    return {
        "torch_threads": threads,
        "prefetch_on_ms_per_step": on,
        "prefetch_off_ms_per_step": off,
        "off_over_on": off / on,
        "off_over_off_control": off / control,
        "p10_p90_ms": {name: spread(times) for name, times in pooled.items()},
        "sampling_in_line_ms": statistics.median(sampling_ms(experiment, 3 * steps)),
        "steps_per_variant": len(pooled["on"]),
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "prefetch.json")
    parser.add_argument("--threads", default=f"1,{torch.get_num_threads()}", help="torch thread counts, e.g. 1,2")
    args = parser.parse_args()
    thread_counts = sorted({int(count) for count in args.threads.split(",")})
    results = [measure(threads, args.rounds, args.steps) for threads in thread_counts]
    for r in results:
        print(
            f"torch threads {r['torch_threads']}: prefetch on {r['prefetch_on_ms_per_step']:.1f} ms/step, "
            f"off {r['prefetch_off_ms_per_step']:.1f} ms/step: off/on {r['off_over_on']:.3f} "
            f"(off/off again, the noise: {r['off_over_off_control']:.3f}); "
            f"sampling in line {r['sampling_in_line_ms']:.2f} ms"
        )
    machine = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu_affinity": sorted(os.sched_getaffinity(0)),  # one CPU under `taskset -c 0`, as a worker with one
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
