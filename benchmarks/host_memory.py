"""What keeping freed host memory is worth (distmeta/host_memory.py): distmeta's Conv4 meta-step
with it and with glibc's defaults, side by side in one run.

    python benchmarks/host_memory.py [--rounds 3] [--json benchmarks/results/host_memory.json]

Each round times `benchmarks/engine_speed.py`'s child for distmeta's `auto` variant (Omniglot
Conv4 5-way 1-shot, meta-batch 32, the loop's two threads; 10 timed steps after 2 warm-up ones,
each its own process) once with `--distmeta-allocator kept` and once with `default`, alternating,
for second- and first-order MAML. Then, as Ray Train runs a worker's function in a thread of its
own, it times 1000-task sinusoid MAML meta-steps (one torch thread; 20 timed after 10 warm-up)
in a thread that allocated before the setting was made, with each setting, alternating (each
its own process), and counts the pages faulted in per step. Prints each setting's median over
the rounds' medians (each round's figures are in the JSON) and writes the JSON. About 5 minutes
with 3 rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

SETTINGS = ("kept", "default")


def main() -> None:
    from engine_speed import run_variant

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "host_memory.json")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    engine_speed = str(ROOT / "benchmarks" / "engine_speed.py")
    rounds: dict[str, dict[str, list[float]]] = {}
    for order in ("second", "first"):
        rounds[order] = {setting: [] for setting in SETTINGS}
        for _ in range(args.rounds):
            for setting in SETTINGS:
                command = [sys.executable, engine_speed, "--child", "conv4", "auto", "--orders", order]
                result = run_variant(command + ["--distmeta-allocator", setting], "conv4", order, "auto", 1800.0)
                if "failed" in result:
                    raise SystemExit(f"{order} order, {setting}: {result['failed']}")
                rounds[order][setting].append(result["ms_per_step"])
                print(f"  {order:6} {setting:7} {result['ms_per_step']:7.1f} ms/step", flush=True)
    in_a_thread: dict[str, list[dict[str, float]]] = {setting: [] for setting in SETTINGS}
    for _ in range(args.rounds):
        for setting in SETTINGS:
            in_a_thread[setting].append(sinusoid_steps_in_a_thread(setting))
            step = in_a_thread[setting][-1]
            print(f"  thread {setting:7} {step['ms_per_step']:7.1f} ms/step {step['faults_per_step']:7.0f} faults/step")
    medians = {order: {s: statistics.median(ms) for s, ms in by.items()} for order, by in rounds.items()}
    thread_medians = {
        setting: {key: statistics.median(step[key] for step in steps) for key in ("ms_per_step", "faults_per_step")}
        for setting, steps in in_a_thread.items()
    }
    print(f"\n{'order':7} {'kept':>9} {'default':>9} {'default / kept':>15}")
    for order, by in medians.items():
        print(f"{order:7} {by['kept']:7.1f}ms {by['default']:7.1f}ms {by['default'] / by['kept']:15.2f}")
    kept, default = thread_medians["kept"], thread_medians["default"]
    print(
        f"sinusoid MAML, 1000 tasks, in a thread: kept {kept['ms_per_step']:.1f} ms ({kept['faults_per_step']:.0f} "
        f"faults) a step, default {default['ms_per_step']:.1f} ms ({default['faults_per_step']:.0f} faults)"
    )
    command = "python benchmarks/host_memory.py" + "".join(f" {a}" for a in sys.argv[1:])
    report = {
        "command": command,
        "ms_per_step": rounds,
        "median_ms": medians,
        "sinusoid_in_a_thread": {"rounds": in_a_thread, "median": thread_medians},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.json}")


STEPS_IN_A_THREAD = textwrap.dedent(
    """
    import json, resource, sys, threading, time, torch
    from distmeta.config import load_config
    from distmeta.experiment import build_experiment
    from distmeta.training.trainer import initial_state, meta_step

    def steps():
        experiment = build_experiment(load_config(None, ["train.meta_batch_size=1000"]))
        state = initial_state(experiment)  # this thread has its own malloc arena before the call
        if sys.argv[1] == "kept":
            from distmeta.host_memory import keep_freed_memory
            keep_freed_memory()
        for _ in range(10):
            meta_step(experiment, state)
        faults, times = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, []
        for _ in range(20):
            started = time.perf_counter()
            meta_step(experiment, state)
            times.append(time.perf_counter() - started)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        times.sort()
        print(json.dumps({"ms_per_step": 1000 * (times[9] + times[10]) / 2, "faults_per_step": faults / 20}))

    torch.set_num_threads(1)
    thread = threading.Thread(target=steps)  # as Ray Train runs the per-worker function
    thread.start()
    thread.join()
    """
)


def sinusoid_steps_in_a_thread(setting: str) -> dict[str, float]:
    """Median ms and mean page faults of a 1000-task sinusoid meta-step taken in a thread (own process)."""
    done = subprocess.run([sys.executable, "-c", STEPS_IN_A_THREAD, setting], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"sinusoid in a thread, {setting}: {done.stderr.strip()[-300:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
