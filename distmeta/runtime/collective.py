"""Every collective call distmeta makes, each a no-op without a process group.

A meta-step makes one: an all-reduce (sum) of one flat buffer. A run starts with
one more: rank 0's initial meta-parameters broadcast to every rank. Every
meta-gradient and the sums of the metrics travel together, so a step costs one
collective call whatever the number of parameter tensors. Not DDP: DDP hooks
into `.backward()` and cannot take second-order gradients. The object
collectives below run once per run (set-up, resume, a benchmark's timings).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from distmeta.algorithms import Params


def all_reduce_sum(grad_sum: Params, metric_sums: torch.Tensor) -> tuple[Params, torch.Tensor, torch.Tensor]:
    """Sum `grad_sum` and `metric_sums` over all ranks (a no-op without a process group).

    Returns the summed gradient (views into one flat buffer), the summed metrics, and
    that flat buffer itself (one finiteness check covers all of it).
    """
    names = list(grad_sum)
    flat = torch.cat([grad_sum[name].reshape(-1) for name in names] + [metric_sums.to(grad_sum[names[0]].dtype)])
    if distributed():
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    reduced: Params = {}
    offset = 0
    for name in names:
        size = grad_sum[name].numel()
        reduced[name] = flat[offset : offset + size].view_as(grad_sum[name])
        offset += size
    return reduced, flat[offset:], flat


def broadcast_parameters(params: Params) -> None:
    """Rank 0's values of `params`, copied in place into every rank's, in one flat broadcast.

    Ranks then start from the same meta-parameters without relying on drawing the same
    random numbers (another torch build, device or library version could draw others).
    """
    if not distributed():
        return
    names = list(params)
    flat = torch.cat([params[name].detach().reshape(-1) for name in names])
    dist.broadcast(flat, src=0)
    offset = 0
    with torch.no_grad():
        for name in names:
            size = params[name].numel()
            params[name].copy_(flat[offset : offset + size].view_as(params[name]))
            offset += size


def share_of_meta_batch(meta_batch_size: int, rank: int, world_size: int) -> range:
    """The task indices rank `rank` samples: contiguous, sizes differing by at most one."""
    return range(meta_batch_size * rank // world_size, meta_batch_size * (rank + 1) // world_size)


def distributed() -> bool:
    """Whether this process is one rank of a process group of two or more."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Wait for every rank (a no-op without a process group)."""
    if distributed():
        dist.barrier()


def from_rank_zero(value):
    """Rank 0's `value` on every rank (e.g. the checkpoint every rank resumes from)."""
    if not distributed():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gathered(value) -> list:
    """Every rank's `value`, in rank order, on every rank."""
    if not distributed():
        return [value]
    everyone: list = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, value)
    return everyone
