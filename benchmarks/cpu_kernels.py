"""Why Conv4 computes channels-last with its own batch norm on a CPU: the kernels, timed side by
side, and the float32 meta-gradient of each layout against float64.

    python benchmarks/cpu_kernels.py [--json benchmarks/results/cpu_kernels.json]   # about 1 min

Kernels (one thread, a Conv4 block's 25 images of 64 x 28 x 28; median of 30 calls):
with freed memory kept for reuse, as in distmeta's processes (`distmeta/host_memory.py`):
max-pooling and the first convolution (one input channel) on NCHW and on channels-last; batch norm
forward and double backward, PyTorch's `F.batch_norm` on either layout against
`distmeta.models.cpu_batch_norm` on channels-last.

Accuracy: the second-order MAML meta-gradient of 8 Omniglot 5-way 1-shot tasks (engine_speed's
Conv4 setup) in float32, relative to float64 (by norm, conv biases left out: their gradient
under batch norm is zero up to rounding), for three ways to run the Conv4 under autograd:
NCHW with `F.batch_norm` (before), channels-last with `F.batch_norm`, and channels-last with
`cpu_batch_norm` (what distmeta runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

SHAPE = (25, 64, 28, 28)


def median_ms(fn, calls: int = 30) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def kernel_times() -> dict[str, float]:
    from distmeta.models.conv4 import channels_last
    from distmeta.models.cpu_batch_norm import batch_stat_norm

    g = torch.Generator().manual_seed(0)
    nchw = torch.randn(*SHAPE, generator=g)
    last = nchw.contiguous(memory_format=torch.channels_last)
    images = torch.rand(SHAPE[0], 1, 28, 28, generator=g)
    kernel = torch.randn(64, 1, 3, 3, generator=g)
    weight, bias = torch.rand(64, generator=g) + 0.5, torch.randn(64, generator=g)

    def double_backward(norm, x):
        x = x.detach().requires_grad_()
        w, b = weight.clone().requires_grad_(), bias.clone().requires_grad_()
        grads = torch.autograd.grad(norm(x, w, b).square().sum(), (x, w), create_graph=True)
        torch.autograd.grad(grads[0].square().sum() + grads[1].sum(), (x, w))

    built_in = lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True)  # noqa: E731
    ours = lambda x, w, b: batch_stat_norm(x, w, b, 1e-5)  # noqa: E731
    return {
        "max_pool NCHW": median_ms(lambda: F.max_pool2d(nchw, 2)),
        "max_pool channels-last": median_ms(lambda: F.max_pool2d(last, 2)),
        "first conv NCHW": median_ms(lambda: F.conv2d(images, kernel, padding=1)),
        "first conv channels-last": median_ms(lambda: F.conv2d(channels_last(images), kernel, padding=1)),
        "batch norm forward, F.batch_norm NCHW": median_ms(lambda: built_in(nchw, weight, bias)),
        "batch norm forward, F.batch_norm channels-last": median_ms(lambda: built_in(last, weight, bias)),
        "batch norm forward, cpu_batch_norm channels-last": median_ms(lambda: ours(last, weight, bias)),
        "batch norm double backward, F.batch_norm NCHW": median_ms(lambda: double_backward(built_in, nchw), 10),
        "batch norm double backward, cpu_batch_norm channels-last": median_ms(lambda: double_backward(ours, last), 10),
    }


def meta_gradient_errors() -> dict[str, float]:
    import engine_speed

    from distmeta.execution import batch_meta_gradient
    from distmeta.models import conv4
    from distmeta.tasks import TaskBatch

    experiment, batch, _ = engine_speed.build("conv4")
    batch = batch.select(0, 8)
    initial = experiment.initial_meta_parameters()
    as_they_are, ours = conv4.channels_last, conv4.batch_stat_norm

    def built_in(x, weight, bias, eps):
        return F.batch_norm(x, None, None, weight, bias, training=True, eps=eps)

    ways = {
        "NCHW, F.batch_norm": (lambda x: x, built_in),
        "channels-last, F.batch_norm": (as_they_are, built_in),
        "channels-last, cpu_batch_norm": (as_they_are, ours),
    }

    def gradient(way: str, dtype: torch.dtype) -> torch.Tensor:
        conv4.channels_last, conv4.batch_stat_norm = ways[way]
        try:
            experiment.model.to(dtype)
            params = {name: value.to(dtype) for name, value in initial.items()}
            tasks = TaskBatch(
                batch.support_x.to(dtype), batch.support_y, batch.query_x.to(dtype), batch.query_y, seed=batch.seed
            )
            grads = batch_meta_gradient(experiment.algorithm, params, tasks, "loop").grad_sum
        finally:
            conv4.channels_last, conv4.batch_stat_norm = as_they_are, ours
        kept = [name for name in grads if not (name.startswith("features.") and name.endswith(".0.bias"))]
        return torch.cat([grads[name].double().reshape(-1) for name in kept])

    truth = gradient("NCHW, F.batch_norm", torch.float64)
    return {way: ((gradient(way, torch.float32) - truth).norm() / truth.norm()).item() for way in ways}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "cpu_kernels.json")
    args = parser.parse_args()
    from distmeta.host_memory import keep_freed_memory

    keep_freed_memory()  # as distmeta's processes do; without it each fresh 5 MB block faults in
    torch.set_num_threads(1)
    times = kernel_times()
    torch.set_num_threads(2)
    errors = meta_gradient_errors()
    print(f"{'kernel (one thread, 25 x 64 x 28 x 28)':58} {'ms':>7}")
    for name, ms in times.items():
        print(f"{name:58} {ms:7.2f}")
    print(f"\n{'float32 meta-gradient against float64 (second order)':58} {'rel. diff':>9}")
    for name, error in errors.items():
        print(f"{name:58} {error:9.1e}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/cpu_kernels.py" + (" --json " + str(args.json) if "--json" in sys.argv else "")
    record = {"command": command, "torch": torch.__version__, "kernel_ms": times, "meta_gradient_rel_diff": errors}
    args.json.write_text(json.dumps(record, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
