"""Scaling on the machine at hand: sinusoid MAML, 1 vs 2 Ray Train workers, weak scaling.

    python benchmarks/scaling.py [--meta-batch 1000] [--steps 50] [--warmup 10]
    (or: make bench-scaling)

Takes about a minute on 2 cores (a local Ray cluster starts, then one Ray Train run
per worker count; the timed steps themselves take a few seconds). It is
`distmeta bench --workers 1,2 --task sine --algo maml --scaling weak` through the
same Python API, with 1000 tasks per worker, so that a step is compute-bound: measured
here, a step of 100 tasks takes ~9 ms while the gloo all-reduce of the 1-40-40-1 MLP's
gradients costs ~1-2 ms whatever the batch, >10% of the step; with 1000 tasks the step
takes ~25 ms (1 worker), of which task sampling ~0.8 ms (3%; 53 ms of 96 before the
counter-based sampler of distmeta/tasks/streams.py). It writes
benchmarks/results/scaling_sine_maml.{json,png}, prints the table and the two targets:

  - 2 workers give at least 1.8x the tasks/s of 1 worker;
  - the all-reduce takes at most 5% of the step time (2 workers).

Each worker gets one CPU (one torch thread); 2 workers on 2 cores only scale if
nothing else runs: a busy machine shows as MISS, so run it on a quiet one.

What the machine itself allows is measured in the same run (`--ceiling-seconds`, 0 to skip):
the same 1,000-task step in plain processes (no Ray, no collective; freed host memory kept, as a
worker keeps it: distmeta/host_memory.py), one pinned to each CPU
alone, then one per CPU at once. Its two figures bound the speedup of any 2-worker run here:
independent processes at once (no synchronisation at all), and lock-step (every step waits for
the slowest CPU, as a synchronous all-reduce does). On this VM the CPUs are not equal: measured
here, one ran the step ~20% slower than the other, alone and together.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from pathlib import Path

from distmeta.benchmarking.scaling import BenchRequest, run_bench
from distmeta.config import load_config

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SPEEDUP_TARGET = 1.8
ALL_REDUCE_TARGET = 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meta-batch", type=int, default=1000, help="tasks per worker (weak scaling)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="1- and 2-worker runs taken in turn, pooled")
    parser.add_argument("--json", default=str(RESULTS / "scaling_sine_maml.json"))
    parser.add_argument(
        "--ceiling-seconds", type=float, default=8.0, help="seconds per plain-process measurement (0: skip)"
    )
    args = parser.parse_args()
    config = load_config(None, ["task.name=sinusoid", "algorithm.name=maml"])
    request = BenchRequest(
        workers=(1, 2),
        gpus_per_worker=0,
        meta_batch=args.meta_batch,
        scaling="weak",
        steps=args.steps,
        warmup=args.warmup,
        rounds=args.rounds,
        json_path=args.json,
        plot_path=str(Path(args.json).with_suffix(".png")),
        command={"script": "benchmarks/scaling.py", **vars(args)},
    )
    result = run_bench(config, request)
    one, two = result.summaries
    speedup = two.tasks_per_s / one.tasks_per_s
    if args.ceiling_seconds > 0:
        ceiling = machine_ceiling(args.meta_batch, args.ceiling_seconds)
        ceiling["distmeta_speedup"] = speedup
        _add_to_json(Path(args.json), "machine_ceiling", ceiling)
        print(ceiling_table(ceiling))
    all_reduce = two.phases["all_reduce"].share
    print(
        f"target: 2 workers >= {SPEEDUP_TARGET}x the tasks/s of 1: {speedup:.2f}x "
        f"({two.tasks_per_s:,.0f} vs {one.tasks_per_s:,.0f} tasks/s) -> {_verdict(speedup >= SPEEDUP_TARGET)}"
    )
    print(
        f"target: all-reduce <= {ALL_REDUCE_TARGET:.0%} of the step time (2 workers): {all_reduce:.1%} "
        f"-> {_verdict(all_reduce <= ALL_REDUCE_TARGET)}"
    )


def machine_ceiling(meta_batch: int, seconds: float) -> dict:
    """Steps/s of the 1-worker step in plain processes: unpinned alone (as Ray's 1 worker runs), pinned
    to each CPU alone, and one pinned to each CPU at once; and the 2-worker bounds they imply."""
    cpus = sorted(os.sched_getaffinity(0))
    context = multiprocessing.get_context("spawn")  # a fresh interpreter, as a Ray worker is
    with context.Pool(len(cpus)) as pool:
        unpinned = pool.apply(_steps_per_s, (meta_batch, seconds, None))
        alone = [pool.apply(_steps_per_s, (meta_batch, seconds, cpu)) for cpu in cpus]
        together = pool.starmap(_steps_per_s, [(meta_batch, seconds, cpu) for cpu in cpus])
    return {
        "command_note": "the 1-worker step (distmeta.training.trainer.meta_step) in plain spawned processes",
        "cpus": cpus,
        "seconds_per_measurement": seconds,
        "steps_per_s_unpinned_alone": unpinned,
        "steps_per_s_pinned_alone": dict(zip(map(str, cpus), alone)),
        "steps_per_s_pinned_together": dict(zip(map(str, cpus), together)),
        "independent_speedup": sum(together) / unpinned,
        "lock_step_speedup": len(cpus) * min(together) / unpinned,
    }


def _steps_per_s(meta_batch: int, seconds: float, cpu: int | None) -> float:
    """Meta-steps per second of the in-process trainer's step on `meta_batch` sinusoid tasks."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    import torch

    from distmeta.experiment import build_experiment
    from distmeta.host_memory import keep_freed_memory
    from distmeta.training.trainer import initial_state, meta_step

    torch.set_num_threads(1)
    keep_freed_memory()  # as a Ray worker does (runtime.worker.start_worker)
    config = load_config(None, ["task.name=sinusoid", "algorithm.name=maml", f"train.meta_batch_size={meta_batch}"])
    experiment = build_experiment(config)
    state = initial_state(experiment)
    for _ in range(10):  # warm-up, as the bench's
        meta_step(experiment, state)
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        meta_step(experiment, state)
        steps += 1
    return steps / (time.perf_counter() - started)


def ceiling_table(ceiling: dict) -> str:
    alone = ", ".join(f"CPU {cpu} {rate:.1f}" for cpu, rate in ceiling["steps_per_s_pinned_alone"].items())
    together = ", ".join(f"CPU {cpu} {rate:.1f}" for cpu, rate in ceiling["steps_per_s_pinned_together"].items())
    return "\n".join(
        [
            f"what this machine allows (plain processes, no Ray): steps/s unpinned alone "
            f"{ceiling['steps_per_s_unpinned_alone']:.1f}; pinned alone: {alone}; pinned at once: {together}",
            f"  speedup bound of {len(ceiling['cpus'])} independent processes: {ceiling['independent_speedup']:.2f}x; "
            f"in lock-step (each step waits for the slowest CPU): {ceiling['lock_step_speedup']:.2f}x; "
            f"distmeta on Ray: {ceiling['distmeta_speedup']:.2f}x",
        ]
    )


def _add_to_json(path: Path, key: str, value: dict) -> None:
    report = json.loads(path.read_text())
    report[key] = value
    path.write_text(json.dumps(report, indent=2) + "\n")


def _verdict(met: bool) -> str:
    return "PASS" if met else "MISS"


if __name__ == "__main__":
    main()
