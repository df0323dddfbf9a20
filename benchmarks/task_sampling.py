"""Task sampling speed: one meta-batch drawn through `sample_tasks`, as a training step draws it.

    python benchmarks/task_sampling.py [--repeats 200] [--json benchmarks/results/task_sampling.json]

Targets of the engine issue:
  - 1,000 sinusoid tasks (K=10, 10 query) in <= 1 ms;
  - a 5-way 1-shot Omniglot meta-batch of 32 (5 query per class, 28x28) in <= 2 ms: the real
    images of ../shared/data/omniglot when they are there (memory-mapped from the Arrow cache,
    which is built once before timing), synthetic Omniglot either way.
For contrast, "sinusoid, a generator per task" times the earlier sampler's way of drawing the
same 1,000 tasks (a SeedSequence, a Generator and a one-task batch per task, then one concat).

Each row is timed `--repeats` times in this process after a warm-up, with one torch thread;
the median is the figure, the 10th-90th percentiles its spread (the machine is shared).
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

import numpy as np
import torch

from distmeta.config import load_config
from distmeta.tasks import TaskBatch, build_task_distribution, sample_tasks, task_seed

ROOT = Path(__file__).resolve().parents[1]
OMNIGLOT = ROOT.parent / "shared" / "data" / "omniglot"
SINE_TARGET_MS, OMNIGLOT_TARGET_MS = 1.0, 2.0
OMNIGLOT_SETTING = ["task.name=omniglot", "task.ways=5", "task.shots=1", "task.query_shots=5"]


def time_ms(draw, repeats: int) -> dict:
    for _ in range(max(3, repeats // 10)):
        draw()
    times = []
    for step in range(repeats):
        started = time.perf_counter()
        draw(step)
        times.append(1000 * (time.perf_counter() - started))
    times.sort()
    return {
        "median_ms": statistics.median(times),
        "p10_ms": times[len(times) // 10],
        "p90_ms": times[(9 * len(times)) // 10],
        "repeats": repeats,
    }


def meta_batch_drawer(overrides: list[str], tasks: int):
    config = load_config(None, overrides)
    distribution = build_task_distribution(config, "train")
    return lambda step=0: sample_tasks(distribution, config.seed, "train", step, range(tasks))


def per_task_sinusoid(tasks: int):
    """The earlier sampler: a generator and a one-task batch per task, concatenated."""

    def one_task(seed: int) -> TaskBatch:
        rng = np.random.default_rng(seed)
        amplitude, phase = rng.uniform(0.1, 5.0, (1, 1, 1)), rng.uniform(0.0, np.pi, (1, 1, 1))
        x = rng.uniform(-5.0, 5.0, (1, 20, 1))
        x, y = torch.from_numpy(x).float(), torch.from_numpy(amplitude * np.sin(x - phase)).float()
        return TaskBatch(x[:, :10], y[:, :10], x[:, 10:], y[:, 10:], seed=seed)

    return lambda step=0: TaskBatch.concat([one_task(task_seed(0, "train", step, i)) for i in range(tasks)])


def rows_to_run() -> list[tuple[str, object, float | None]]:
    sine = ["task.name=sinusoid", "task.shots=10", "task.query_shots=10"]
    rows = [
        ("sinusoid, 1,000 tasks", meta_batch_drawer(sine, 1000), SINE_TARGET_MS),
        ("sinusoid, 1,000 tasks, a generator per task (earlier)", per_task_sinusoid(1000), None),
        (
            "omniglot 5w1s synthetic, 32 tasks",
            meta_batch_drawer([*OMNIGLOT_SETTING, "task.omniglot.synthetic=true"], 32),
            OMNIGLOT_TARGET_MS,
        ),
    ]
    zips = sorted(str(p) for p in OMNIGLOT.glob("*.zip"))
    if zips:
        real = [
            *OMNIGLOT_SETTING,
            f"task.omniglot.roots=[{', '.join(zips)}]",
            f"task.omniglot.cache_dir={ROOT / '.cache'}",
        ]
        rows.append(("omniglot 5w1s real images, 32 tasks", meta_batch_drawer(real, 32), OMNIGLOT_TARGET_MS))
    else:
        print(f"no Omniglot at {OMNIGLOT}: the real-image row is left out")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "task_sampling.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = []
    for name, draw, target in rows_to_run():
        result = {"name": name, **time_ms(draw, args.repeats), "target_ms": target}
        if target is not None:
            result["met"] = result["median_ms"] <= target
        results.append(result)
    print(table(results))
    machine = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    command = " ".join(["python", "benchmarks/task_sampling.py", *sys.argv[1:]])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"command": command, "machine": machine, "results": results}, indent=2))
    print(f"wrote {args.json}")


def table(results: list[dict]) -> str:
    header = f"{'meta-batch':54} {'median ms':>10} {'p10-p90 ms':>14} {'target':>9}"
    lines = [header, "-" * len(header)]
    for r in results:
        target = "" if r["target_ms"] is None else f"<= {r['target_ms']:g} " + ("PASS" if r["met"] else "MISS")
        lines.append(f"{r['name']:54} {r['median_ms']:10.3f} {r['p10_ms']:6.3f}-{r['p90_ms']:<7.3f} {target:>9}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
