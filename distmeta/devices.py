"""Which device a process computes on: one rule for the driver, the workers, eval and the API.

- A Ray Train worker computes on what Ray gave it (`ray.train.torch.get_device()`:
  its GPU, or the CPU when it asked for none), whatever CUDA_VISIBLE_DEVICES says,
  unless `train.device` says otherwise: `cpu` keeps it on the CPU, `cuda` on a
  worker without a GPU is a user error.
- The driver of a distributed run computes nothing that needs a device: it checks
  the config and the data on the CPU and never creates a CUDA context on a GPU that
  Ray did not give it (one it does not count, shared with a worker's).
- Training in one process, eval and the API resolve `train.device` on this machine;
  eval and the API fall back to the CPU where a config says cuda and there is no
  GPU, so that a GPU-trained checkpoint runs on a laptop.

Pure torch: no Ray here.
"""

from __future__ import annotations

import torch

from distmeta.config import DEVICES
from distmeta.errors import ConfigError, DistmetaError

CPU = torch.device("cpu")

CUDA_INDEX_URL = "https://download.pytorch.org/whl/cu130"
"""Where the CUDA builds of torch live (constraints-gpu.txt pins the one from here)."""


def resolve_device(name: str, field: str = "train.device") -> torch.device:
    """`name` (auto, cpu, cuda) on this machine: cuda must be here. `field` names the setting."""
    if name not in DEVICES:
        raise ConfigError(field, f"unknown device {name!r} (choose from {', '.join(DEVICES)})")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(field, "cuda was asked for, but torch sees no GPU here")
    return torch.device(name)


def usable_device(name: str) -> tuple[torch.device, str]:
    """`train.device` where a checkpoint is used (eval, the API): the CPU when a GPU is not
    here, whatever the config says. Returns the device and why, for a log line."""
    if name == "cuda" and not torch.cuda.is_available():
        return CPU, "the config says cuda, but torch sees no GPU here"
    return resolve_device(name), f"train.device: {name}"


def worker_device(name: str, assigned: torch.device) -> torch.device:
    """A Ray worker's device: `assigned` (what Ray gave it) unless `train.device` says cpu."""
    if name == "cpu":
        return CPU
    if name == "cuda" and assigned.type != "cuda":
        raise ConfigError(
            "train.device",
            "cuda was asked for, but this worker was given no GPU: "
            "pass --gpus-per-worker 1 (or set train.device: auto)",
        )
    return assigned


class CudaTorchError(DistmetaError):
    """GPUs were asked for, but the torch installed here cannot use them."""


def cuda_torch_problem() -> str | None:
    """Why this torch cannot compute on a GPU here (None when it can)."""
    build = f"torch {torch.__version__}"
    if torch.version.cuda is None:
        problem = f"{build} is a CPU-only build"
    elif not torch.cuda.is_available():
        problem = f"{build} (CUDA {torch.version.cuda}) sees no usable GPU (driver missing or too old?)"
    else:
        return None
    return (
        f"GPUs were asked for, but {problem}. Install a CUDA build on every GPU node: "
        f"pip install -c constraints.txt -c constraints-gpu.txt torch --extra-index-url {CUDA_INDEX_URL} "
        f"(cluster/Dockerfile does), or pass --gpus-per-worker 0 to train on CPUs"
    )


def check_cuda_torch() -> None:
    """Raise CudaTorchError when GPUs were asked for and this torch cannot use them."""
    problem = cuda_torch_problem()
    if problem is not None:
        raise CudaTorchError(problem)


def synchronize(device: torch.device) -> None:
    """Wait for the kernels queued on `device` (a no-op on the CPU): a timer reads the clock after it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
