"""Engine speed: ms per MAML meta-step, tasks/s and peak memory, side by side with learn2learn and higher.

    python benchmarks/engine_speed.py [--setups conv4,sine] [--orders second,first] [--variants ...]
                                      [--steps 10] [--baseline-allocator default|kept]
                                      [--json benchmarks/results/engine_speed.json]

Two setups, as in the engine issue, each in the orders it is timed in:
  conv4: Omniglot Conv4, 5-way 1-shot, 5 query images per class, meta-batch 32, 1 inner step, lr 0.4;
         second-order and first-order MAML
  sine:  sinusoid MLP 1-40-40-1, K=10 (10 query), meta-batch 25, 1 inner step, lr 0.01; second order
Variants: distmeta with vectorize auto / vmap / loop, vmap and loop compiled (train.compile on;
the compile, on the first step, is timed apart as compile_s), the textbook per-task loop
(`distmeta.reference`: functional_call + torch.autograd.grad, one task after
another), and learn2learn's MAML wrapper and higher's innerloop_ctx when they are installed
(`bash benchmarks/install_baselines.sh`; learn2learn imports torchvision, which has no CPU
build for torch 2.13 here: an inert stand-in module takes its place, which MAML never touches).
The script installs them into .venv-baselines, a virtual environment of their own: run this
script with that environment's python to time them. They train the Conv4 a user of theirs
writes with PyTorch's layers (`nn.BatchNorm2d(track_running_stats=False)`, ReLU then max-pool;
learn2learn's own OmniglotCNN), holding distmeta's initial weights; the sinusoid MLP as it is.
At the end the run prints, and writes to the JSON, each target of the engine issue against
learn2learn with its figures ("targets").

Every variant's meta-gradient of the timed batch is checked against distmeta's uncompiled loop
(grad_rel_diff: |g - g_loop| / |g_loop| over all parameters; float32, so ~1e-6 for the MLP and
up to ~1e-4 for Conv4 second order). A variant that fails, or runs past --child-timeout, is
reported in the table with the reason; the others still run.

Each variant runs in its own process (so peak memory is its own), with the same
tasks and weights; a meta-step is the meta-gradient of the batch plus an Adam
step. The machine is shared and noisy: read the ratios, measured in one run.
distmeta's variants keep freed host memory for reuse, as `distmeta train` does
(distmeta/host_memory.py); the baselines run with glibc's defaults, as their users run them,
or with the same setting under `--baseline-allocator kept` (`host_allocator` in the JSON);
`--distmeta-allocator default` gives distmeta's variants glibc's defaults (benchmarks/host_memory.py).

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
import os
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
    "conv4": dict(ways=5, shots=1, query=5, meta_batch=32, inner_lr=0.4, orders=["second", "first"]),
    "sine": dict(shots=10, query=10, meta_batch=25, inner_lr=0.01, orders=["second"]),
}
DISTMETA_VARIANTS = ["auto", "vmap", "loop", "vmap compiled", "loop compiled"]
VARIANTS = [*DISTMETA_VARIANTS, "reference loop", "learn2learn", "higher"]
LEFT_OUT_ON_CPU = {
    ("conv4", "vmap"): "measured 2.3x slower than the loop on a CPU (1.75 s against 0.75 s a step) and 3.5 GB",
    ("conv4", "vmap compiled"): "measured slower on a CPU than the uncompiled loop (1.9 s against 1.4 s a step, "
    "after a 97 s compile)",
    ("conv4", "loop compiled"): "one task at a time in one thread, where the uncompiled loop runs two threads",
}
"""Variants a run on a CPU leaves out unless --variants names them (each with why), to keep the run short."""
TARGETS = {("sine", "second"): 10.0, ("conv4", "second"): 1.5, ("conv4", "first"): 1.5}
"""(setup, order) -> the speed-up over learn2learn's ms/step that distmeta's fastest variant is to reach."""
GRAD_TOLERANCE = 1e-3
"""grad_rel_diff above this marks a variant's meta-gradient as differing from distmeta's loop."""


# ---------------------------------------------------------------- one variant (child process)


def build(setup: str, first_order: bool = False):
    from distmeta.config import load_config
    from distmeta.experiment import build_experiment
    from distmeta.tasks import TaskBatch

    spec = SETUPS[setup]
    if setup == "sine":
        overrides = [f"task.shots={spec['shots']}", f"task.query_shots={spec['query']}"]
    else:
        roots = [str(p) for p in sorted(OMNIGLOT.glob("*.zip"))] or ["synthetic"]
        overrides = [
            "task.name=omniglot",
            f"task.omniglot.roots=[{', '.join(roots)}]",
            f"task.ways={spec['ways']}",
            f"task.shots={spec['shots']}",
            f"task.query_shots={spec['query']}",
            f"task.omniglot.cache_dir={ROOT / '.cache'}",
        ]
    overrides += [
        f"algorithm.inner_lr={spec['inner_lr']}",
        "algorithm.inner_steps=1",
        f"train.meta_batch_size={spec['meta_batch']}",
        f"algorithm.first_order={str(first_order).lower()}",
    ]
    config = load_config(None, overrides)
    real_data = setup == "sine" or OMNIGLOT.is_dir()
    experiment = build_experiment(config, check_data=False)
    if real_data:
        from distmeta.training.trainer import meta_batch

        batch = meta_batch(experiment, 0)
    else:  # same shapes, so the same work; the data never changes the speed
        g = torch.Generator().manual_seed(0)
        n, ways = spec["meta_batch"], spec["ways"]
        batch = TaskBatch(
            torch.rand(n, ways * spec["shots"], 1, 28, 28, generator=g),
            torch.arange(ways).repeat_interleave(spec["shots"]).repeat(n, 1),
            torch.rand(n, ways * spec["query"], 1, 28, 28, generator=g),
            torch.arange(ways).repeat_interleave(spec["query"]).repeat(n, 1),
            seed=0,
        )
        batch = batch.to(experiment.device)
    return experiment, batch, real_data


def meta_gradient_function(variant: str, experiment, batch, params):
    """(gradient, parameters it is of, how it runs): `gradient()` is `variant`'s meta-gradient of the
    batch summed over tasks, {name: tensor}, for the parameters it trains; or (None, None, reason)."""
    from distmeta.compilation import MetaGradientRunner
    from distmeta.execution import batch_meta_gradient, resolve_vectorize
    from distmeta.reference import maml_batch_gradient

    algorithm, config = experiment.algorithm, experiment.config
    if variant in ("auto", "vmap", "loop"):
        strategy = resolve_vectorize(variant, config.model_name, experiment.device)[0]
        return lambda: batch_meta_gradient(algorithm, params, batch, strategy).grad_sum, params, strategy
    if variant.endswith(" compiled"):
        strategy = variant.split()[0]
        runner = MetaGradientRunner(
            algorithm,
            strategy,
            None,
            "on",
            (config.model_name, strategy, experiment.device.type),
            print_fn=lambda _: None,
        )
        gradient = lambda: runner(params, batch).grad_sum  # noqa: E731
        gradient.runner = runner
        return gradient, params, f"{strategy}+compile"
    if variant == "reference loop":
        return (
            (
                lambda: maml_batch_gradient(
                    experiment.model,
                    params,
                    batch,
                    algorithm.inner_lr,
                    1,
                    algorithm.first_order,
                    config.is_classification,
                )
            ),
            params,
            "loop",
        )
    if variant == "learn2learn":
        return learn2learn_gradient(experiment, batch, params)
    return higher_gradient(experiment, batch, params)


def baseline_model(experiment, params):
    """The model a library that trains an nn.Module is given, holding `params`' values: the Conv4
    written with PyTorch's own layers, as its users write it (`standard_conv4`); the MLP as it is."""
    import copy

    from distmeta.models import Conv4

    model = experiment.model
    model = standard_conv4(model) if isinstance(model, Conv4) else copy.deepcopy(model)
    with torch.no_grad():
        for name, value in model.named_parameters():
            value.copy_(params[name])
    return model


def standard_conv4(conv4) -> torch.nn.Module:
    """`conv4`'s network in PyTorch's layers, as learn2learn's OmniglotCNN builds it: per block a 3x3
    conv, `nn.BatchNorm2d` on batch statistics (`track_running_stats=False`), ReLU, then 2x2
    max-pool; parameter names (and so weights) as in distmeta's Conv4."""
    from torch import nn

    blocks = []
    for block in list(conv4.features)[:4]:
        conv = block[0]
        blocks.append(
            nn.Sequential(
                nn.Conv2d(conv.in_channels, conv.out_channels, kernel_size=3, padding=1),
                nn.BatchNorm2d(conv.out_channels, eps=block[1].eps, track_running_stats=False),
                nn.ReLU(),
                nn.MaxPool2d(2),
            )
        )
    model = StandardConv4(
        nn.Sequential(*blocks, nn.Flatten()), nn.Linear(conv4.head.in_features, conv4.head.out_features)
    )
    return model.to(dtype=conv4.head.weight.dtype, device=conv4.head.weight.device)


class StandardConv4(torch.nn.Module):
    def __init__(self, features: torch.nn.Module, head: torch.nn.Module):
        super().__init__()
        self.features, self.head = features, head

    def forward(self, x):
        return self.head(self.features(x))


def loss_function(experiment):
    import torch.nn.functional as F

    return F.cross_entropy if experiment.config.is_classification else F.mse_loss


def summed_gradient(parameters: dict, run_tasks) -> callable:
    """The gradient `run_tasks()` leaves in `parameters`' .grad (each task's loss backwarded)."""

    def gradient():
        for value in parameters.values():
            value.grad = None
        run_tasks()
        return {name: value.grad for name, value in parameters.items()}

    return gradient


def import_learn2learn():
    """learn2learn, with an inert stand-in for torchvision (imported by its __init__, not by MAML)."""
    import importlib.abc
    import importlib.machinery
    import types

    class InertModule(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return type(name, (), {"__init__": lambda self, *args, **kwargs: None})

    class InertTorchvision(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, fullname, path, target=None):
            if fullname == "torchvision" or fullname.startswith("torchvision."):
                return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
            return None

        def create_module(self, spec):
            module = InertModule(spec.name)
            module.__path__ = []
            return module

        def exec_module(self, module):
            pass

    try:
        import torchvision  # noqa: F401  (a working one, where there is one)
    except Exception:
        sys.modules.pop("torchvision", None)
        sys.meta_path.insert(0, InertTorchvision())
    import learn2learn

    return learn2learn


def learn2learn_gradient(experiment, batch, params):
    try:
        l2l = import_learn2learn()
    except Exception as error:  # ImportError, or a broken build
        return (
            None,
            None,
            (
                f"learn2learn not importable ({type(error).__name__}: {error}); "
                "bash benchmarks/install_baselines.sh installs it into .venv-baselines"
            ),
        )
    algorithm, loss_fn = experiment.algorithm, loss_function(experiment)
    maml = l2l.algorithms.MAML(
        baseline_model(experiment, params), lr=algorithm.inner_lr, first_order=algorithm.first_order
    )
    parameters = dict(maml.module.named_parameters())

    def run_tasks():
        for i in range(len(batch)):
            sx, sy, qx, qy = (t[i] for t in batch.tensors())
            learner = maml.clone()
            learner.adapt(loss_fn(learner(sx), sy))
            loss_fn(learner(qx), qy).backward()

    return summed_gradient(parameters, run_tasks), parameters, "learn2learn"


def higher_gradient(experiment, batch, params):
    try:
        import higher
    except Exception as error:
        return (
            None,
            None,
            (
                f"higher not importable ({type(error).__name__}: {error}); "
                "bash benchmarks/install_baselines.sh installs it into .venv-baselines"
            ),
        )
    algorithm, loss_fn = experiment.algorithm, loss_function(experiment)
    if algorithm.first_order:
        return None, None, "higher has no first-order MAML (track_higher_grads=False drops the meta-gradient)"
    model = baseline_model(experiment, params)
    inner = torch.optim.SGD(model.parameters(), lr=algorithm.inner_lr)
    parameters = dict(model.named_parameters())

    def run_tasks():
        for i in range(len(batch)):
            sx, sy, qx, qy = (t[i] for t in batch.tensors())
            with higher.innerloop_ctx(model, inner, copy_initial_weights=False) as (fmodel, diffopt):
                diffopt.step(loss_fn(fmodel(sx), sy))
                loss_fn(fmodel(qx), qy).backward()

    return summed_gradient(parameters, run_tasks), parameters, "higher"


def relative_difference(grads: dict, reference: dict) -> float:
    names = list(reference)
    got = torch.cat([grads[name].detach().reshape(-1).double().cpu() for name in names])
    want = torch.cat([reference[name].detach().reshape(-1).double().cpu() for name in names])
    return ((got - want).norm() / want.norm()).item()


def run_child(
    setup: str,
    variant: str,
    steps: int,
    warmup: int,
    first_order: bool,
    baseline_allocator: str,
    distmeta_allocator: str = "kept",
) -> dict:
    from distmeta.devices import synchronize
    from distmeta.execution import batch_meta_gradient
    from distmeta.host_memory import keep_freed_memory

    # distmeta's runs keep freed memory for reuse (`distmeta train` and Ray workers do, see
    # distmeta/host_memory.py); the baselines run with glibc's defaults, as their users run them,
    # unless --baseline-allocator kept gives them the same setting (--distmeta-allocator default
    # takes it from distmeta's, to measure what it is worth: benchmarks/host_memory.py).
    allocator = distmeta_allocator if variant in DISTMETA_VARIANTS else baseline_allocator
    kept = allocator == "kept" and keep_freed_memory()

    experiment, batch, real_data = build(setup, first_order)
    device = experiment.device
    params = experiment.initial_meta_parameters()
    gradient, parameters, how = meta_gradient_function(variant, experiment, batch, params)
    if gradient is None:
        return {"setup": setup, "variant": variant, "order": "first" if first_order else "second", "skipped": how}
    reference = batch_meta_gradient(experiment.algorithm, params, batch, "loop").grad_sum
    started = time.perf_counter()
    grad_rel_diff = relative_difference(gradient(), reference)  # a compiled variant compiles here
    runner = getattr(gradient, "runner", None)
    compile_s = runner.compile_s if runner is not None else None
    first_step_s = time.perf_counter() - started
    optimizer = torch.optim.Adam(parameters.values(), lr=1e-3)

    def step():
        grads = gradient()
        for name, value in parameters.items():
            value.grad = grads[name] / len(batch)
        optimizer.step()

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
        "setup": setup,
        "variant": variant,
        "runs_as": how,
        "real_data": real_data,
        "device": str(device),
        "order": "first" if first_order else "second",
        "ms_per_step": 1000 * median,
        "ms_p10": 1000 * sorted(times)[int(0.1 * (len(times) - 1))],
        "ms_p90": 1000 * sorted(times)[int(0.9 * (len(times) - 1))],
        "tasks_per_s": len(batch) / median,
        "compile_s": compile_s,
        "first_step_s": first_step_s,
        "grad_rel_diff": grad_rel_diff,
        "grad_matches": grad_rel_diff <= GRAD_TOLERANCE,
        "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20 if on_gpu else rss_mb,
        "memory_measured": "cuda max_memory_allocated" if on_gpu else "host peak RSS",
        "peak_rss_mb": rss_mb,
        "steps": steps,
        "warmup": warmup,
        "threads": torch.get_num_threads(),
        "host_allocator": "keeps freed memory" if kept else "glibc defaults",
    }


# ---------------------------------------------------------------- the table (parent process)


def run_all(
    steps: dict,
    runs: list[tuple[str, str]],
    variants: list[str],
    named: bool,
    timeout_s: float,
    save=lambda results, complete: None,
    baseline_allocator: str = "default",
    distmeta_allocator: str = "kept",
) -> list[dict]:
    """Every variant on every (setup, order), each in its own process; `named`: --variants chose them.
    `save(results, complete)` after each variant, so that a run cut short keeps what it measured."""
    results = []
    for setup, order in runs:
        for variant in variants:
            left_out = LEFT_OUT_ON_CPU.get((setup, variant))
            if left_out and not named and not torch.cuda.is_available():
                results.append(
                    {
                        "setup": setup,
                        "order": order,
                        "variant": variant,
                        "skipped": f"left out on a CPU ({left_out}); --variants naming it runs it",
                    }
                )
                print(f"  {setup:5} {order:6} {variant:15} {describe(results[-1])}", flush=True)
                continue
            auto = same_run(results, setup, order, "auto")
            if auto is not None and auto["runs_as"] == variant:
                results.append(
                    {
                        "setup": setup,
                        "order": order,
                        "variant": variant,
                        "skipped": f"what auto runs here ({variant}): see auto",
                    }
                )
                print(f"  {setup:5} {order:6} {variant:15} {describe(results[-1])}", flush=True)
                continue
            command = [sys.executable, __file__, "--child", setup, variant, "--steps", str(steps[setup])]
            command += ["--orders", order, "--baseline-allocator", baseline_allocator]
            command += ["--distmeta-allocator", distmeta_allocator]
            results.append(run_variant(command, setup, order, variant, timeout_s))
            print(f"  {setup:5} {order:6} {variant:15} {describe(results[-1])}", flush=True)
            save(results, False)
    add_ratios(results)
    return results


def run_variant(command: list[str], setup: str, order: str, variant: str, timeout_s: float) -> dict:
    """The child's result, or a record of why it gave none: a variant's failure is not the run's."""
    failed = {"setup": setup, "order": order, "variant": variant}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {**failed, "failed": f"ran past --child-timeout {timeout_s:g} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {**failed, "failed": f"exit {done.returncode}: {done.stderr.strip()[-300:]}"}
    return json.loads(lines[-1])


def describe(result: dict) -> str:
    for outcome in ("skipped", "failed"):
        if outcome in result:
            return f"{outcome}: {result[outcome]}"
    compiled = f", compile {result['compile_s']:.1f} s" if result.get("compile_s") is not None else ""
    return f"{result['ms_per_step']:8.1f} ms/step, grad rel. diff {result['grad_rel_diff']:.1e}{compiled}"


def timed(result: dict) -> bool:
    return "skipped" not in result and "failed" not in result


def same_run(results: list[dict], setup: str, order: str, variant: str) -> dict | None:
    """The timed result of `variant` on (setup, order), or None."""
    return next(
        (r for r in results if r["setup"] == setup and r["order"] == order and r["variant"] == variant and timed(r)),
        None,
    )


def add_ratios(results: list[dict]) -> None:
    """Speed-up of each variant over the textbook per-task loop and over learn2learn, same setup and order."""
    for result in results:
        if not timed(result):
            continue
        for baseline in ("reference loop", "learn2learn"):
            key = "speedup_vs_" + baseline.replace(" ", "_")
            other = same_run(results, result["setup"], result["order"], baseline)
            if other is not None:
                result[key] = other["ms_per_step"] / result["ms_per_step"]


def targets(results: list[dict]) -> list[dict]:
    """Each target of the engine issue: distmeta's fastest variant (uncompiled and compiled alike; a
    compile's seconds are stated apart) against learn2learn's ms/step, and whether it is reached."""
    found = []
    for (setup, order), wanted in TARGETS.items():
        ours = [
            r
            for r in results
            if r["setup"] == setup and r["order"] == order and timed(r) and r["variant"] in DISTMETA_VARIANTS
        ]
        learn2learn = same_run(results, setup, order, "learn2learn")
        if not ours or learn2learn is None:
            found.append(
                {
                    "setup": setup,
                    "order": order,
                    "wanted": wanted,
                    "reached": None,
                    "why": "not measured (distmeta's variants and learn2learn must both run)",
                }
            )
            continue
        best = min(ours, key=lambda r: r["ms_per_step"])
        speedup = learn2learn["ms_per_step"] / best["ms_per_step"]
        found.append(
            {
                "setup": setup,
                "order": order,
                "wanted": wanted,
                "variant": best["variant"],
                "ms_per_step": best["ms_per_step"],
                "compile_s": best.get("compile_s"),
                "learn2learn_ms_per_step": learn2learn["ms_per_step"],
                "speedup": speedup,
                "reached": speedup >= wanted,
                "gradients_equal": all(r["grad_matches"] for r in (best, learn2learn)),
            }
        )
    return found


def target_lines(found: list[dict]) -> list[str]:
    lines = []
    for t in found:
        name = f"{t['setup']} {t['order']} order: distmeta >= {t['wanted']:g}x learn2learn"
        if t["reached"] is None:
            lines.append(f"{name}: {t['why']}")
            continue
        compiled = f", compile {t['compile_s']:.0f} s apart" if t.get("compile_s") is not None else ""
        lines.append(
            f"{name}: {t['speedup']:.2f}x ({t['variant']} {t['ms_per_step']:.1f} ms{compiled} against "
            f"{t['learn2learn_ms_per_step']:.1f} ms), {'reached' if t['reached'] else 'MISSED'}"
        )
    return lines


def table(results: list[dict]) -> str:
    header = (
        f"{'setup':6} {'order':6} {'variant':15} {'runs as':15} {'ms/step':>9} {'p10-p90':>15} {'tasks/s':>8} "
        f"{'peak mem':>9} {'vs loop':>8} {'vs l2l':>7} {'compile':>8} {'grad diff':>9}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        if not timed(r):
            outcome = "skipped" if "skipped" in r else "FAILED"
            lines.append(
                f"{r['setup']:6} {r['order']:6} {r['variant']:15} {outcome}: {r.get('skipped') or r.get('failed')}"
            )
            continue
        ratio = f"{r['speedup_vs_reference_loop']:7.2f}x" if "speedup_vs_reference_loop" in r else f"{'-':>8}"
        l2l = f"{r['speedup_vs_learn2learn']:6.2f}x" if "speedup_vs_learn2learn" in r else f"{'-':>7}"
        compiled = f"{r['compile_s']:7.1f}s" if r.get("compile_s") is not None else f"{'-':>8}"
        spread = f"{r['ms_p10']:.1f}-{r['ms_p90']:.1f}"
        lines.append(
            f"{r['setup']:6} {r['order']:6} {r['variant']:15} {r['runs_as']:15} {r['ms_per_step']:9.1f} "
            f"{spread:>15} {r['tasks_per_s']:8.0f} {r['peak_memory_mb']:7.0f}MB {ratio} {l2l} {compiled} "
            f"{r['grad_rel_diff']:9.1e}" + ("" if r["grad_matches"] else " DIFFERS")
        )
    return "\n".join(lines)


def gpu_name() -> str | None:
    """The GPU the variants ran on (train.device auto takes it when torch sees one), or None."""
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, help="timed meta-steps per variant (default 10 conv4, 200 sine)")
    parser.add_argument("--setups", default="conv4,sine")
    parser.add_argument(
        "--orders",
        default="second,first",
        help="MAML orders to time, each where its setup is timed in it (conv4: both; sine: second)",
    )
    parser.add_argument(
        "--variants",
        help="comma-separated, of: " + ", ".join(VARIANTS) + " (default: all, "
        "but on a CPU the compiled Conv4 ones, which are slow there)",
    )
    parser.add_argument("--child-timeout", type=float, default=1800.0, help="seconds a variant may take")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "engine_speed.json")
    parser.add_argument(
        "--baseline-allocator",
        choices=["default", "kept"],
        default="default",
        help="the host allocator of the reference loop, learn2learn and higher: glibc's defaults, as their "
        "users run them (default), or kept, keeping freed memory as distmeta's runs do (distmeta/host_memory.py)",
    )
    parser.add_argument(
        "--distmeta-allocator",
        choices=["kept", "default"],
        default="kept",
        help="the host allocator of distmeta's variants: kept, as `distmeta train` runs (default), or glibc's "
        "defaults (benchmarks/host_memory.py compares the two)",
    )
    parser.add_argument("--child", nargs=2, metavar=("SETUP", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    setups, orders = args.setups.split(","), args.orders.split(",")
    variants = (args.variants or ",".join(VARIANTS)).split(",")
    for option, chosen, known in (
        ("--setups", setups, SETUPS),
        ("--orders", orders, ["second", "first"]),
        ("--variants", variants, VARIANTS),
    ):
        unknown = [name for name in chosen if name not in known]
        if unknown:
            parser.error(f"{option}: unknown {', '.join(unknown)} (choose from {', '.join(known)})")
    if args.child:
        setup, variant = args.child
        steps = args.steps or (10 if setup == "conv4" else 200)
        first_order = orders == ["first"]
        try:
            result = run_child(
                setup,
                variant,
                steps,
                2 if setup == "conv4" else 20,
                first_order,
                args.baseline_allocator,
                args.distmeta_allocator,
            )
        except Exception as error:  # reported in the table; the other variants still run
            result = {
                "setup": setup,
                "variant": variant,
                "order": orders[0],
                "failed": f"{type(error).__name__}: {error}"[:500],
            }
        print(json.dumps(result))
        return
    steps = {"conv4": args.steps or 10, "sine": args.steps or 200}
    runs = [(setup, order) for setup in setups for order in SETUPS[setup]["orders"] if order in orders]
    print(
        f"engine speed: MAML, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    load_at_start = os.getloadavg()
    started = time.perf_counter()
    python = Path(sys.executable)
    python = python.relative_to(ROOT) if python.is_relative_to(ROOT) else Path("python")
    niceness = os.nice(0)
    command = " ".join(
        [
            *(["nice", "-n", str(niceness)] if niceness else []),
            str(python),
            "benchmarks/engine_speed.py",
            *(f"'{a}'" if " " in a else a for a in sys.argv[1:]),
        ]
    )

    def save(results: list[dict], complete: bool) -> None:
        machine = {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "gpu": gpu_name(),
            "load_average": {"start": load_at_start, "end": os.getloadavg()},
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "command": command,
                    "complete": complete,
                    "wall_s": time.perf_counter() - started,
                    "machine": machine,
                    "setups": SETUPS,
                    "baseline_allocator": args.baseline_allocator,
                    "distmeta_allocator": args.distmeta_allocator,
                    "results": results,
                    "targets": targets(results),
                },
                indent=2,
            )
        )

    results = run_all(
        steps,
        runs,
        variants,
        args.variants is not None,
        args.child_timeout,
        save,
        args.baseline_allocator,
        args.distmeta_allocator,
    )
    save(results, True)
    print()
    print(table(results))
    print()
    print("\n".join(target_lines(targets(results))))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
