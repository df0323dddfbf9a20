"""What this machine allows a 2-worker run: one worker's meta-step in plain processes, no Ray, no collective.

    python benchmarks/machine_ceiling.py --config benchmarks/configs/quadratic_lstm.yaml \\
        [--set KEY=VALUE ...] [--seconds 8] [--json benchmarks/results/machine_ceiling_quadratic_lstm.json]

For a config's meta-step (a few-shot algorithm's `training.trainer.meta_step`, or a learned
optimiser's `learned_optimizer_runs.training.rank_meta_step` with every unroll on one rank), it
counts steps per second in spawned processes with one torch thread and freed host memory kept,
as a Ray worker runs: one unpinned alone, one pinned to each CPU alone, then one pinned to each
CPU at once. The last two bound the speed-up of any 2-worker run of that step here: independent
processes at once (no synchronisation at all), and lock-step (every step waits for the slower
CPU, as a synchronous all-reduce does). `benchmarks/scaling.py` runs it on its sinusoid step in
the same run as its Ray workers; about 40 s at the default 8 seconds a measurement.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

WARMUP_STEPS = 10


def machine_ceiling(config_path: str | None, overrides: list[str], seconds: float) -> dict:
    """Steps/s of the config's 1-worker step in plain processes: unpinned alone (as Ray's 1 worker runs),
    pinned to each CPU alone, and one pinned to each CPU at once; and the 2-worker bounds they imply."""
    cpus = sorted(os.sched_getaffinity(0))
    context = multiprocessing.get_context("spawn")  # a fresh interpreter, as a Ray worker is
    with context.Pool(len(cpus)) as pool:
        unpinned = pool.apply(steps_per_s, (config_path, overrides, seconds, None))
        alone = [pool.apply(steps_per_s, (config_path, overrides, seconds, cpu)) for cpu in cpus]
        together = pool.starmap(steps_per_s, [(config_path, overrides, seconds, cpu) for cpu in cpus])
    return {
        "command_note": "the config's 1-worker meta-step in plain spawned processes (benchmarks/machine_ceiling.py)",
        "config": config_path,
        "overrides": overrides,
        "cpus": cpus,
        "seconds_per_measurement": seconds,
        "steps_per_s_unpinned_alone": unpinned,
        "steps_per_s_pinned_alone": dict(zip(map(str, cpus), alone)),
        "steps_per_s_pinned_together": dict(zip(map(str, cpus), together)),
        "independent_speedup": sum(together) / unpinned,
        "lock_step_speedup": len(cpus) * min(together) / unpinned,
    }


def steps_per_s(config_path: str | None, overrides: list[str], seconds: float, cpu: int | None) -> float:
    """Meta-steps per second of the config's in-process step, after a warm-up."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    import torch

    from distmeta.config import load_config
    from distmeta.host_memory import keep_freed_memory

    torch.set_num_threads(1)
    keep_freed_memory()  # as a Ray worker does (runtime.worker.start_worker)
    step = one_worker_step(load_config(config_path, overrides))
    for _ in range(WARMUP_STEPS):
        step()
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        steps += 1
    return steps / (time.perf_counter() - started)


def one_worker_step(config):
    """The meta-step a single Ray worker takes for this config, as a function of nothing."""
    if config.learns_update_rule:
        from distmeta.learned_optimizer_runs.training import build_run, initial_state, rank_meta_step

        run = build_run(config)
        run_state = initial_state(run, range(run.unrolls))
        return lambda: rank_meta_step(run, run_state, 0, 1)
    from distmeta.experiment import build_experiment
    from distmeta.training.trainer import initial_state as initial_train_state
    from distmeta.training.trainer import meta_step

    experiment = build_experiment(config)
    state = initial_train_state(experiment)
    return lambda: meta_step(experiment, state)


def ceiling_table(ceiling: dict) -> str:
    alone = ", ".join(f"CPU {cpu} {rate:.1f}" for cpu, rate in ceiling["steps_per_s_pinned_alone"].items())
    together = ", ".join(f"CPU {cpu} {rate:.1f}" for cpu, rate in ceiling["steps_per_s_pinned_together"].items())
    lines = [
        f"what this machine allows (plain processes, no Ray): steps/s unpinned alone "
        f"{ceiling['steps_per_s_unpinned_alone']:.1f}; pinned alone: {alone}; pinned at once: {together}",
        f"  speedup bound of {len(ceiling['cpus'])} independent processes: {ceiling['independent_speedup']:.2f}x; "
        f"in lock-step (each step waits for the slowest CPU): {ceiling['lock_step_speedup']:.2f}x",
    ]
    if "distmeta_speedup" in ceiling:
        lines[-1] += f"; distmeta on Ray: {ceiling['distmeta_speedup']:.2f}x"
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="a YAML config (default: the built-in sinusoid MAML)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--json", type=Path, help="where to write the figures (with the command)")
    args = parser.parse_args()
    if args.seconds <= 0:
        parser.error(f"--seconds must be positive, got {args.seconds}")
    from distmeta.config import load_config
    from distmeta.errors import ConfigError

    try:  # here, before any process starts: a bad config is named once, not in each child's traceback
        load_config(args.config, args.overrides)
    except ConfigError as error:
        parser.error(str(error))
    ceiling = machine_ceiling(args.config, args.overrides, args.seconds)
    print(ceiling_table(ceiling))
    if args.json is None:
        return
    command = "python benchmarks/machine_ceiling.py" + "".join(f" {a}" for a in sys.argv[1:])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"command": command, **ceiling}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
