"""Engine speed: ms per second-order MAML meta-step, tasks/s and peak memory, side by side.

    python benchmarks/engine_speed.py [--steps 10] [--json benchmarks/results/engine_speed.json]

Two setups, as in the engine issue:
  conv4: Omniglot Conv4, 5-way 1-shot, 5 query images per class, meta-batch 32, 1 inner step, lr 0.4
  sine:  sinusoid MLP 1-40-40-1, K=10 (10 query), meta-batch 25, 1 inner step, lr 0.01
Variants: distmeta with vectorize auto / vmap / loop, the textbook per-task loop
(`distmeta.reference`: functional_call + torch.autograd.grad, one task after
another), and learn2learn's MAML wrapper when it can be imported.

Each variant runs in its own process (so peak memory is its own), with the same
tasks and weights; a meta-step is the meta-gradient of the batch plus an Adam
step. The machine is shared and noisy: read the ratios, measured in one run.

On a GPU (train.device auto: torch sees one) the batch and the weights are on
it, every timed step ends with `torch.cuda.synchronize()` (kernels run
asynchronously: the clock would otherwise stop when they are queued), peak
memory is `torch.cuda.max_memory_allocated` (`memory_measured` says which; the
host's peak RSS is kept in `peak_rss_mb` either way), and the machine record
names the GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OMNIGLOT = ROOT.parent / "shared" / "data" / "omniglot"
SETUPS = {
    "conv4": dict(ways=5, shots=1, query=5, meta_batch=32, inner_lr=0.4),
    "sine": dict(shots=10, query=10, meta_batch=25, inner_lr=0.01),
}
VARIANTS = ["auto", "vmap", "loop", "reference loop", "learn2learn"]


# ---------------------------------------------------------------- one variant (child process)


def build(setup: str):
    from distmeta.config import load_config
    from distmeta.experiment import build_experiment
    from distmeta.tasks import TaskBatch

    spec = SETUPS[setup]
    if setup == "sine":
        overrides = [f"task.shots={spec['shots']}", f"task.query_shots={spec['query']}"]
    else:
        roots = [str(p) for p in sorted(OMNIGLOT.glob("*.zip"))] or ["synthetic"]
        overrides = ["task.name=omniglot", f"task.omniglot.roots=[{', '.join(roots)}]", f"task.ways={spec['ways']}",
                     f"task.shots={spec['shots']}", f"task.query_shots={spec['query']}",
                     f"task.omniglot.cache_dir={ROOT / '.cache'}"]
    overrides += [f"algorithm.inner_lr={spec['inner_lr']}", "algorithm.inner_steps=1",
                  f"train.meta_batch_size={spec['meta_batch']}"]
    config = load_config(None, overrides)
    real_data = setup == "sine" or OMNIGLOT.is_dir()
    experiment = build_experiment(config, check_data=False)
    if real_data:
        from distmeta.training.trainer import meta_batch

        batch = meta_batch(experiment, 0)
    else:  # same shapes, so the same work; the data never changes the speed
        g = torch.Generator().manual_seed(0)
        n, ways = spec["meta_batch"], spec["ways"]
        batch = TaskBatch(torch.rand(n, ways * spec["shots"], 1, 28, 28, generator=g),
                          torch.arange(ways).repeat_interleave(spec["shots"]).repeat(n, 1),
                          torch.rand(n, ways * spec["query"], 1, 28, 28, generator=g),
                          torch.arange(ways).repeat_interleave(spec["query"]).repeat(n, 1), seed=0)
        batch = batch.to(experiment.device)
    return experiment, batch, real_data


def step_function(variant: str, experiment, batch):
    """A function doing one meta-step (gradient + Adam) of `variant`, or a reason it cannot run."""
    from distmeta.execution import batch_meta_gradient, resolve_vectorize
    from distmeta.reference import maml_batch_gradient

    params = experiment.initial_meta_parameters()
    optimizer = torch.optim.Adam(params.values(), lr=1e-3)
    algorithm, config = experiment.algorithm, experiment.config

    def apply(grads):
        for name, value in params.items():
            value.grad = grads[name] / len(batch)
        optimizer.step()

    if variant in ("auto", "vmap", "loop"):
        strategy = resolve_vectorize(variant, config.model_name, experiment.device)[0]
        return lambda: apply(batch_meta_gradient(algorithm, params, batch, strategy).grad_sum), strategy
    if variant == "reference loop":
        return lambda: apply(maml_batch_gradient(experiment.model, params, batch, algorithm.inner_lr, 1, False,
                                                 config.is_classification)), "loop"
    return learn2learn_step(experiment, batch)


def learn2learn_step(experiment, batch):
    try:
        import learn2learn as l2l
    except Exception as error:  # ImportError, or a broken build
        return None, (f"learn2learn not importable ({type(error).__name__}); from PyPI, learn2learn 0.2.0 "
                      "does not build on Python 3.11 as is")
    import copy
    import torch.nn.functional as F

    model = copy.deepcopy(experiment.model)
    maml = l2l.algorithms.MAML(model, lr=experiment.algorithm.inner_lr, first_order=False)
    optimizer = torch.optim.Adam(maml.parameters(), lr=1e-3)
    loss_fn = F.cross_entropy if experiment.config.is_classification else F.mse_loss

    def step():
        optimizer.zero_grad()
        for i in range(len(batch)):
            sx, sy, qx, qy = (t[i] for t in batch.tensors())
            learner = maml.clone()
            learner.adapt(loss_fn(learner(sx), sy))
            (loss_fn(learner(qx), qy) / len(batch)).backward()
        optimizer.step()

    return step, "learn2learn"


def run_child(setup: str, variant: str, steps: int, warmup: int) -> dict:
    from distmeta.devices import synchronize

    experiment, batch, real_data = build(setup)
    device = experiment.device
    step, how = step_function(variant, experiment, batch)
    if step is None:
        return {"setup": setup, "variant": variant, "skipped": how}
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        synchronize(device)
        started = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    on_gpu = device.type == "cuda"
    return {
        "setup": setup, "variant": variant, "runs_as": how, "real_data": real_data, "device": str(device),
        "ms_per_step": 1000 * median, "ms_p90": 1000 * sorted(times)[int(0.9 * (len(times) - 1))],
        "tasks_per_s": len(batch) / median,
        "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20 if on_gpu else rss_mb,
        "memory_measured": "cuda max_memory_allocated" if on_gpu else "host peak RSS",
        "peak_rss_mb": rss_mb, "steps": steps, "threads": torch.get_num_threads(),
    }


# ---------------------------------------------------------------- the table (parent process)


def run_all(steps: dict, setups: list[str]) -> list[dict]:
    results = []
    for setup in setups:
        for variant in VARIANTS:
            command = [sys.executable, __file__, "--child", setup, variant, "--steps", str(steps[setup])]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                results.append({"setup": setup, "variant": variant, "skipped": f"failed: {done.stderr[-300:]}"})
            else:
                results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"  {setup:5} {variant:15} {describe(results[-1])}", flush=True)
    add_ratios(results)
    return results


def describe(result: dict) -> str:
    if "skipped" in result:
        return f"skipped: {result['skipped']}"
    return f"{result['ms_per_step']:8.1f} ms/step"


def add_ratios(results: list[dict]) -> None:
    """Speed-up of each variant over the textbook per-task loop of the same setup."""
    for result in results:
        if "skipped" in result:
            continue
        reference = next(r for r in results if r["setup"] == result["setup"] and r["variant"] == "reference loop")
        result["speedup_vs_reference_loop"] = reference["ms_per_step"] / result["ms_per_step"]


def table(results: list[dict]) -> str:
    header = f"{'setup':6} {'variant':15} {'runs as':11} {'ms/step':>9} {'p90':>9} {'tasks/s':>9} {'peak mem':>9} {'vs loop':>8}"
    lines = [header, "-" * len(header)]
    for r in results:
        if "skipped" in r:
            lines.append(f"{r['setup']:6} {r['variant']:15} skipped: {r['skipped']}")
            continue
        lines.append(f"{r['setup']:6} {r['variant']:15} {r['runs_as']:11} {r['ms_per_step']:9.1f} {r['ms_p90']:9.1f} "
                     f"{r['tasks_per_s']:9.0f} {r['peak_memory_mb']:7.0f}MB {r['speedup_vs_reference_loop']:7.2f}x")
    return "\n".join(lines)


def gpu_name() -> str | None:
    """The GPU the variants ran on (train.device auto takes it when torch sees one), or None."""
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, help="timed meta-steps per variant (default 10 conv4, 200 sine)")
    parser.add_argument("--setups", default="conv4,sine")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "engine_speed.json")
    parser.add_argument("--child", nargs=2, metavar=("SETUP", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        setup, variant = args.child
        steps = args.steps or (10 if setup == "conv4" else 200)
        print(json.dumps(run_child(setup, variant, steps, warmup=2 if setup == "conv4" else 20)))
        return
    steps = {"conv4": args.steps or 10, "sine": args.steps or 200}
    print(f"engine speed: second-order MAML, torch {torch.__version__}, {torch.get_num_threads()} threads")
    results = run_all(steps, args.setups.split(","))
    print()
    print(table(results))
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpus": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
               "gpu": gpu_name()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": machine, "setups": SETUPS, "results": results}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
