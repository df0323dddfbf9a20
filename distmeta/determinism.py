"""`train.deterministic`: the same numbers on every rerun, at the cost of speed, on a GPU too.

On the CPU torch is deterministic already: a rerun with the same config gives
bit-identical parameters. On a GPU it is not, by default: cuDNN convolutions
run in TF32 (10-bit mantissa) on Ampere and newer, cuDNN may pick other
algorithms from run to run, and some CUDA kernels accumulate with atomics.
`train.deterministic: true` turns TF32 off (convolutions and matmuls in full
float32), makes cuDNN pick deterministic algorithms, and has torch raise on any
op without a deterministic implementation; that refusal becomes a
`DeterminismError` naming the op, raised once (not retried like a crash).

The settings are process-wide, so they are applied, both ways, wherever an
experiment is built.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from distmeta.errors import DistmetaError

# cuBLAS is deterministic only with a fixed workspace, and torch reads its size once, when the
# process first uses cuBLAS: so it is set when distmeta is imported (before any GPU work), not
# when a deterministic experiment is built, which may come after other GPU work. It costs
# 8 x 4 MiB of GPU memory per stream at most, with or without `train.deterministic`.
CUBLAS_WORKSPACE = ":4096:8"
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)

# torch replaces its cudnn module by a CudnnModule at import, whose `conv` mypy cannot see.
_CUDNN_CONV = torch.backends.cudnn.conv  # type: ignore[attr-defined]

# What torch had when this module was imported, restored when an experiment is not deterministic.
_TORCH_DEFAULTS = {
    "matmul": torch.backends.cuda.matmul.fp32_precision,
    "conv": _CUDNN_CONV.fp32_precision,
    "cudnn_deterministic": torch.backends.cudnn.deterministic,
    "cudnn_benchmark": torch.backends.cudnn.benchmark,
}

_REFUSAL = re.compile(r"^(.*?) does not have a deterministic implementation", re.DOTALL)


class DeterminismError(DistmetaError):
    """An op has no deterministic implementation and `train.deterministic` is true."""

    def __init__(self, op: str):
        self.op = op
        super().__init__(
            f"train.deterministic: {op} has no deterministic implementation on this device; "
            f"set train.deterministic: false (or train.device: cpu) to run it"
        )


def set_determinism(deterministic: bool) -> None:
    """Deterministic kernels and no TF32 (True), or torch's defaults (False)."""
    if deterministic:
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        _CUDNN_CONV.fp32_precision = "ieee"
    else:
        torch.backends.cuda.matmul.fp32_precision = _TORCH_DEFAULTS["matmul"]
        _CUDNN_CONV.fp32_precision = _TORCH_DEFAULTS["conv"]
    torch.backends.cudnn.deterministic = deterministic or _TORCH_DEFAULTS["cudnn_deterministic"]
    torch.backends.cudnn.benchmark = False if deterministic else _TORCH_DEFAULTS["cudnn_benchmark"]
    torch.use_deterministic_algorithms(deterministic)


@contextmanager
def refusals_named() -> Iterator[None]:
    """Inside: torch's refusal of a non-deterministic op becomes a DeterminismError naming it."""
    try:
        yield
    except RuntimeError as error:
        refused = _REFUSAL.match(str(error))
        if refused is None:
            raise
        raise DeterminismError(refused.group(1).strip()) from error
