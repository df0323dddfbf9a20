"""GPU smoke test: everything distmeta claims about a GPU, checked on the one at hand.

    python benchmarks/gpu_smoke.py [--json benchmarks/results/gpu_smoke.json] [--only NAME,...]

Checks, each recorded in the JSON with what it measured:
  cuda_build          torch is a CUDA build and sees the GPU (name, capability, CUDA, cuDNN)
  train_in_process    `distmeta train --in-process` on the GPU, vmap and loop: finite losses
  train_on_ray        Ray Train workers each on a GPU (NCCL), vmap and loop, meta-test on the workers
  meta_gradients      every algorithm, Conv4 and the MLP, GPU (vmap and loop) against the CPU loop
                      in float64, the largest difference over the gradient's largest entry:
                      float64 within 1e-9; float32 with TF32 off (train.deterministic) and by
                      default (TF32 convolutions on Ampere and newer) reported, next to the
                      float32 CPU loop's own distance from the float64 reference
  all_reduce          `all_reduce_sum` on CUDA tensors in 2 processes (NCCL on 2 GPUs; gloo's
                      CUDA path when there is one GPU, plus a 1-rank NCCL all-reduce)
  bench               `distmeta bench --gpus-per-worker 1`: the record names the GPU
  checkpoint_on_cpu   a GPU-trained checkpoint holds only CPU tensors and `distmeta eval --device cpu`
                      runs it in a process that sees no GPU, to the GPU's numbers within 1e-4
  determinism         two GPU runs with train.deterministic: bit-identical parameters; two
                      without it: the largest difference

Exit status: 0 every check passed; 1 a check failed (the JSON says which and why);
77 no GPU here: nothing checked, nothing written (the "skipped" status of automake and
meson test suites). `--rehearse-on-cpu` runs every check with the CPU standing in for the
GPU: it tests this script (tests/benchmarks do), and proves nothing about a GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NO_GPU = 77
TINY_RUN = [
    "train.steps=20",
    "train.meta_batch_size=8",
    "train.log_every=10",
    "train.val_every=0",
    "train.checkpoint_every=20",
    "eval.tasks=40",
    "eval.batch_size=20",
]
CONV = [
    "task.name=omniglot",
    "task.omniglot.roots=[not-read]",
    "task.ways=5",
    "model.channels=16",
    "algorithm.inner_lr=0.4",
    "algorithm.inner_steps=2",
]

ONE_TEST_STEP = 1
"""The meta-gradient checks never adapt at test time; 1 step is valid for every algorithm (ALFA
refuses more test steps than the inner steps it learned rates for)."""


def quiet(*_):
    pass


# ---------------------------------------------------------------- the checks


def check_cuda_build(device: torch.device) -> dict:
    from distmeta.devices import cuda_torch_problem

    if device.type == "cpu":
        return {"ok": True, "torch": torch.__version__, "cuda": torch.version.cuda, "rehearsal": True}
    return {
        "ok": cuda_torch_problem() is None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "gpu": torch.cuda.get_device_name(device),
        "capability": list(torch.cuda.get_device_capability(device)),
        "gpus": torch.cuda.device_count(),
    }


def check_train_in_process(device: torch.device, folder: Path) -> dict:
    from distmeta.config import load_config
    from distmeta.training.trainer import train

    runs = {}
    for strategy in ("vmap", "loop"):
        config = load_config(
            None,
            [
                *TINY_RUN,
                f"train.device={device.type}",
                f"train.vectorize={strategy}",
                f"train.run_dir={folder / strategy}",
            ],
        )
        result = train(config, print_fn=quiet)
        history = [json.loads(line) for line in (folder / strategy / "metrics.jsonl").read_text().splitlines()]
        losses = [record["meta_loss"] for record in history if "meta_loss" in record]
        runs[strategy] = {
            "devices": result.summary["devices"],
            "inner_loops": result.summary["inner_loops"],
            "first_loss": losses[0],
            "last_loss": losses[-1],
            "test_mse": result.test.mean,
        }
    ok = all(
        run["devices"] == [device.type]
        and run["inner_loops"] == name
        and all(map(math.isfinite, (run["first_loss"], run["last_loss"], run["test_mse"])))
        for name, run in runs.items()
    )
    return {"ok": ok, **runs}


def check_train_on_ray(device: torch.device, folder: Path) -> dict:
    from distmeta.config import load_config
    from distmeta.runtime.launcher import ClusterRequest, train_distributed

    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    workers = max(1, min(gpus, 2))
    runs = {}
    for strategy in ("vmap", "loop"):
        config = load_config(None, [*TINY_RUN, f"train.vectorize={strategy}"])
        request = ClusterRequest(
            workers=workers, gpus_per_worker=1 if gpus else 0, storage=str(folder), name=f"ray-{strategy}"
        )
        result = train_distributed(config, request, print_fn=quiet)
        runs[strategy] = {"workers": workers, "devices": result.summary["devices"], "test_mse": result.test.mean}
    ok = all(
        all(d.startswith(device.type) for d in run["devices"]) and len(run["devices"]) == workers
        for run in runs.values()
    )
    return {"ok": ok, **runs}


def _same_tasks_and_weights(model: str, name: str, deterministic: bool, device: torch.device):
    """The CPU and device experiments of one algorithm, its initial weights and one fixed meta-batch."""
    from distmeta.config import load_config
    from distmeta.devices import CPU
    from distmeta.experiment import build_experiment
    from distmeta.tasks import TaskBatch
    from distmeta.training.trainer import meta_batch

    overrides = [
        *(CONV if model == "conv4" else []),
        f"algorithm.name={name}",
        f"algorithm.test_inner_steps={ONE_TEST_STEP}",
        f"train.deterministic={str(deterministic).lower()}",
        "train.meta_batch_size=4",
    ]
    config = load_config(None, overrides)
    on_cpu = build_experiment(config, CPU, check_data=False)
    on_device = build_experiment(config, device, check_data=False)
    params = on_cpu.initial_meta_parameters()
    if model == "conv4":  # Omniglot-shaped images; the values do not matter here
        g = torch.Generator().manual_seed(0)
        labels = torch.arange(5).repeat(4, 1)
        batch = TaskBatch(
            torch.rand(4, 5, 1, 28, 28, generator=g), labels, torch.rand(4, 5, 1, 28, 28, generator=g), labels, seed=0
        )
    else:
        batch = meta_batch(on_cpu, 0)
    return on_cpu, on_device, params, batch


def _in_dtype(params: dict, batch, dtype: torch.dtype, device: torch.device):
    from distmeta.tasks import TaskBatch

    moved = {key: value.to(device, dtype) for key, value in params.items()}
    floats = [x.to(device, dtype) for x in (batch.support_x, batch.query_x)]
    targets = [y.to(device, dtype) if y.is_floating_point() else y.to(device) for y in (batch.support_y, batch.query_y)]
    return moved, TaskBatch(floats[0], targets[0], floats[1], targets[1], seed=batch.seed)


def meta_gradient_differences(device: torch.device, deterministic: bool) -> list[dict]:
    """Each algorithm's meta-gradient on `device` (vmap, loop) against the CPU loop in float64.

    The reference is float64 because the float32 CPU loop is itself up to ~1e-2 off it on
    Conv4 with full-network adaptation (inner lr 0.4, two steps: a ReLU or max-pool
    selection that flips with rounding moves the gradient by a step), measured on the CPU
    here; a float32 device result could only match it to that. So the device is checked
    in float64, where it must agree to rounding, and its float32 results are reported
    next to the CPU's own float32 distance from the same reference.
    """
    from distmeta.algorithms import ALGORITHMS, check_algorithm_settings
    from distmeta.config import AlgorithmConfig
    from distmeta.devices import CPU
    from distmeta.errors import ConfigError
    from distmeta.execution import batch_meta_gradient

    rows = []
    for model in ("conv4", "mlp"):
        for name in ALGORITHMS:
            # conv4 classifies, the mlp regresses: skip the algorithms that only do the other
            settings = AlgorithmConfig(name=name, test_inner_steps=ONE_TEST_STEP)
            try:
                check_algorithm_settings(settings, model == "conv4", model)
            except ConfigError:
                continue
            on_cpu, on_device, params, batch = _same_tasks_and_weights(model, name, deterministic, device)
            reference = batch_meta_gradient(
                on_cpu.algorithm, *_in_dtype(params, batch, torch.float64, CPU), "loop"
            ).grad_sum
            cpu_float32 = batch_meta_gradient(
                on_cpu.algorithm, *_in_dtype(params, batch, torch.float32, CPU), "loop"
            ).grad_sum
            row = {
                "model": model,
                "algorithm": name,
                "cpu_loop_float32": largest_relative_difference(cpu_float32, reference),
            }
            for strategy in ("vmap", "loop"):
                for dtype in (torch.float64, torch.float32):
                    got = batch_meta_gradient(
                        on_device.algorithm, *_in_dtype(params, batch, dtype, device), strategy
                    ).grad_sum
                    row[f"{strategy}_{str(dtype).removeprefix('torch.')}"] = largest_relative_difference(got, reference)
            rows.append(row)
    return rows


def largest_relative_difference(got: dict, reference: dict) -> float:
    """The largest entry-wise difference over the reference's largest entry, across all parameters.

    Relative to the whole gradient, not to each tensor: the gradient of a convolution's bias
    under batch norm is zero but for rounding, and rounding over zero is no measure.
    """
    scale = max(value.abs().max().item() for value in reference.values()) or 1e-30
    return max((got[key].cpu().double() - reference[key].double()).abs().max().item() for key in reference) / scale


FLOAT64_TOLERANCE = 1e-9


def check_meta_gradients(device: torch.device) -> dict:
    """Float64 on the device equals float64 on the CPU; float32 (TF32 off and default) is reported."""
    strict = meta_gradient_differences(device, deterministic=True)
    default = meta_gradient_differences(device, deterministic=False)

    def largest(rows: list[dict], column: str) -> float:
        return max(row[key] for row in rows for key in row if key.endswith(column) and key != "cpu_loop_float32")

    worst_float64 = max(largest(strict, "float64"), largest(default, "float64"))
    return {
        "ok": worst_float64 <= FLOAT64_TOLERANCE,
        "tolerance_float64": FLOAT64_TOLERANCE,
        "largest_float64": worst_float64,
        "largest_float32_tf32_off": largest(strict, "float32"),
        "largest_float32_default": largest(default, "float32"),
        "largest_cpu_float32": max(row["cpu_loop_float32"] for row in strict),
        "tf32_off": strict,
        "default": default,
    }


def _all_reduce_rank(rank: int, world: int, port: int, backend: str, device_type: str, out: str) -> None:
    import torch.distributed as dist

    from distmeta.runtime.collective import all_reduce_sum

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        device = torch.device(device_type, rank % torch.cuda.device_count()) if device_type == "cuda" else None
        if device is not None:
            torch.cuda.set_device(device)
        grads = {"w": torch.full((3, 4), float(rank + 1), device=device), "b": torch.arange(5.0, device=device)}
        reduced, metrics, _ = all_reduce_sum(grads, torch.tensor([1.0, float(rank)], device=device))
        torch.save(
            {
                "w": reduced["w"].cpu(),
                "b": reduced["b"].cpu(),
                "metrics": metrics.cpu(),
                "device": str(reduced["w"].device),
            },
            f"{out}/rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def check_all_reduce(device: torch.device, folder: Path) -> dict:
    import torch.multiprocessing as mp

    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    backend = "nccl" if gpus >= 2 else "gloo"
    mp.spawn(_all_reduce_rank, args=(2, _free_port(), backend, device.type, str(folder)), nprocs=2)
    results = [torch.load(folder / f"rank{rank}.pt") for rank in (0, 1)]
    ok = all(
        torch.equal(r["w"], torch.full((3, 4), 3.0))
        and torch.equal(r["b"], 2 * torch.arange(5.0))
        and torch.equal(r["metrics"], torch.tensor([2.0, 1.0]))
        for r in results
    )
    record = {"ok": ok, "backend": backend, "ranks": 2, "tensor_device": results[0]["device"]}
    if device.type == "cuda" and gpus < 2:  # NCCL itself, on the one GPU
        record["nccl_one_rank"] = _nccl_one_rank(device)
        record["ok"] = ok and record["nccl_one_rank"]
    return record


def _nccl_one_rank(device: torch.device) -> bool:
    import torch.distributed as dist

    store = dist.TCPStore("127.0.0.1", _free_port(), 1, True)
    dist.init_process_group("nccl", store=store, rank=0, world_size=1)
    try:
        value = torch.ones(4, device=device)
        dist.all_reduce(value)
        return torch.equal(value.cpu(), torch.ones(4))
    finally:
        dist.destroy_process_group()


def check_bench(device: torch.device, folder: Path) -> dict:
    gpus = 1 if device.type == "cuda" else 0
    target = folder / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "distmeta",
            "bench",
            "--workers",
            "1",
            "--gpus-per-worker",
            str(gpus),
            "--steps",
            "5",
            "--warmup",
            "2",
            "--json",
            str(target),
            "--plot",
            str(folder / "bench.png"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return {"ok": False, "stderr": done.stderr[-2000:]}
    machine = json.loads(target.read_text())["machine"]
    expected = torch.cuda.get_device_name(device) if gpus else None
    return {"ok": expected is None or expected in machine["device_names"], "device_names": machine["device_names"]}


def check_checkpoint_on_cpu(device: torch.device, folder: Path) -> dict:
    from distmeta.config import load_config
    from distmeta.training.checkpoint import latest_checkpoint
    from distmeta.training.trainer import train

    run_dir = folder / "trained-on-gpu"
    config = load_config(
        None, [*TINY_RUN, f"train.device={device.type}", f"train.run_dir={run_dir}", "train.meta_optimizer=adam"]
    )
    trained = train(config, print_fn=quiet)
    payload = torch.load(latest_checkpoint(run_dir), weights_only=False)  # each tensor where it was saved from
    tensors = [
        *payload["meta_parameters"].values(),
        *(t for state in payload["optimizer"]["state"].values() for t in state.values() if isinstance(t, torch.Tensor)),
    ]
    on_cpu_only = all(t.device.type == "cpu" for t in tensors)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # a machine without a GPU
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "distmeta",
            "eval",
            str(run_dir),
            "--device",
            "cpu",
            "--tasks",
            "40",
            "--json",
            str(folder / "eval.json"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return {"ok": False, "on_cpu_only": on_cpu_only, "stderr": done.stderr[-2000:]}
    cpu_mse = json.loads((folder / "eval.json").read_text())["mean"]
    difference = abs(cpu_mse - trained.test.mean) / max(abs(trained.test.mean), 1e-12)
    return {
        "ok": on_cpu_only and difference <= 1e-4,
        "on_cpu_only": on_cpu_only,
        "test_mse_on_gpu": trained.test.mean,
        "test_mse_on_cpu": cpu_mse,
        "relative_difference": difference,
    }


def check_determinism(device: torch.device, folder: Path) -> dict:
    from distmeta.config import load_config
    from distmeta.training.trainer import train

    def run(name: str, deterministic: bool):
        config = load_config(
            None,
            [
                *TINY_RUN,
                f"train.device={device.type}",
                f"train.deterministic={str(deterministic).lower()}",
                f"train.run_dir={folder / name}",
            ],
        )
        return train(config, print_fn=quiet, final_eval=False).meta_params

    first, second = run("strict-1", True), run("strict-2", True)
    identical = all(torch.equal(first[key], second[key]) for key in first)
    loose_a, loose_b = run("default-1", False), run("default-2", False)
    largest = max((loose_a[key] - loose_b[key]).abs().max().item() for key in loose_a)
    return {"ok": identical, "deterministic_bit_identical": identical, "default_largest_difference": largest}


CHECKS = {
    "cuda_build": lambda device, folder: check_cuda_build(device),
    "train_in_process": check_train_in_process,
    "train_on_ray": check_train_on_ray,
    "meta_gradients": lambda device, folder: check_meta_gradients(device),
    "all_reduce": check_all_reduce,
    "bench": check_bench,
    "checkpoint_on_cpu": check_checkpoint_on_cpu,
    "determinism": check_determinism,
}


# ---------------------------------------------------------------- running them


def run_checks(device: torch.device, names: list[str]) -> list[dict]:
    results = []
    for name in names:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"gpu-smoke-{name}-") as folder:
            try:
                outcome = CHECKS[name](device, Path(folder))
            except Exception as error:  # a check that crashes has failed; the others still run
                outcome = {
                    "ok": False,
                    "error": f"{type(error).__name__}: {error}",
                    "traceback": traceback.format_exc()[-3000:],
                }
        outcome = {"check": name, **outcome, "seconds": round(time.perf_counter() - started, 1)}
        print(f"  {'ok  ' if outcome['ok'] else 'FAIL'} {name} ({outcome['seconds']} s)", flush=True)
        results.append(outcome)
    return results


def machine(device: torch.device) -> dict:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": gpu,
        "gpus": torch.cuda.device_count() if gpu else 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_smoke.json")
    parser.add_argument("--only", help=f"comma-separated checks (default all: {', '.join(CHECKS)})")
    parser.add_argument(
        "--rehearse-on-cpu",
        action="store_true",
        help="run every check with the CPU in the GPU's place (tests this script; proves nothing about a GPU)",
    )
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(CHECKS)
    unknown = [name for name in names if name not in CHECKS]
    if unknown:
        parser.error(f"unknown checks {unknown}; choose from {', '.join(CHECKS)}")
    if args.rehearse_on_cpu:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda", 0)
    else:
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        print(f"no GPU: nothing checked (torch {torch.__version__}, {build}, sees no GPU)")
        return NO_GPU
    print(f"gpu smoke test on {device} ({'rehearsal on the CPU' if args.rehearse_on_cpu else machine(device)['gpu']})")
    results = run_checks(device, names)
    record = {
        "machine": machine(device),
        "rehearsal_on_cpu": args.rehearse_on_cpu,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "passed": all(r["ok"] for r in results),
        "checks": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=2))
    print(f"{'passed' if record['passed'] else 'FAILED'}; wrote {args.json}")
    return 0 if record["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
