"""The collectives in two real gloo processes (torch.multiprocessing, no Ray)."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from distmeta.config import load_config
from distmeta.experiment import build_experiment
from distmeta.runtime.collective import broadcast_parameters, gathered


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def broadcast_from_differently_seeded_ranks(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        # each rank draws from another seed: only the broadcast can make them agree
        config = load_config(None, [f"seed={rank}", "algorithm.name=metasgd"])
        params = build_experiment(config, check_data=False).initial_meta_parameters()
        before = {name: value.clone() for name, value in params.items()}
        broadcast_parameters(params)
        torch.save({"before": before, "after": params, "everyone": gathered(params)}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_every_rank_starts_from_rank_zeros_parameters_whatever_it_drew(tmp_path):
    mp.spawn(broadcast_from_differently_seeded_ranks, args=(2, free_port(), str(tmp_path)), nprocs=2)
    zero, one = (torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1))
    assert any(not torch.equal(zero["before"][k], one["before"][k]) for k in zero["before"])
    for name, value in zero["before"].items():
        assert torch.equal(zero["after"][name], value)
        assert torch.equal(one["after"][name], value)
        assert torch.equal(one["everyone"][1][name], value)


def test_without_a_process_group_the_broadcast_leaves_the_parameters_alone():
    params = {"w": torch.arange(3.0)}
    broadcast_parameters(params)
    assert torch.equal(params["w"], torch.arange(3.0))
