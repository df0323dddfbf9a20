"""Standard normal noise that a task's own support set determines: sampling without an RNG.

LEO samples its latent codes during meta-training. The engine runs a task's adaptation
under `torch.func.vmap` (whose default refuses random ops) or in a loop over threads, on
any number of workers, and these must all give the same meta-gradient. So the noise is a
hash of the task's support inputs: the same task gives the same noise whichever strategy
or worker runs it, and tasks (drawn afresh at every meta-step) get fresh noise.

The hash is integer arithmetic on 31-bit values held in int64 (products below 2^63, sums
of at most 2^31 terms of 2^31 each), so it is exact: the same bits whatever order a
reduction runs in, batched or not. Uniforms from it become normals by Box-Muller.
"""

from __future__ import annotations

import math

import torch

MASK = (1 << 31) - 1
QUANTUM = 1 << 16
"""Inputs are read to 1/2^16: finer than any difference between two tasks' inputs that matters."""


def mix(h: torch.Tensor) -> torch.Tensor:
    """A 31-bit integer hash of 31-bit integers (an LCG step, then xor-shift-multiply rounds)."""
    h = (h * 1103515245 + 12345) & MASK
    h = h ^ (h >> 15)
    h = (h * 1664525 + 1013904223) & MASK
    h = h ^ (h >> 13)
    h = (h * 1103515245 + 12345) & MASK
    return h ^ (h >> 16)


def task_key(support_x: torch.Tensor) -> torch.Tensor:
    """A 31-bit integer (0-d int64 tensor) that the support inputs determine."""
    values = (support_x.detach().reshape(-1).double() * QUANTUM).round().long() & MASK
    positions = mix(torch.arange(values.shape[-1], device=support_x.device))
    return mix(((mix(values) * positions) & MASK).sum(-1) & MASK)


def task_normal_noise(support_x: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """Noise of `shape`, entries approximately independent N(0, 1), determined by `support_x`."""
    count = math.prod(shape)
    counters = torch.arange(2 * count, device=support_x.device)
    bits = mix(mix(counters) ^ task_key(support_x))
    uniform = (bits.to(torch.float64) + 0.5) / (MASK + 1)  # in (0, 1): log never sees 0
    radius = torch.sqrt(-2 * torch.log(uniform[:count]))
    normal = radius * torch.cos(2 * math.pi * uniform[count:])
    return normal.reshape(shape).to(dtype)
