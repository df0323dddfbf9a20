"""Evaluations (and the spread of task-conditioned outputs) shared among ranks, in two real gloo
processes (torch.multiprocessing, no Ray)."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from distmeta.conditioning import validation_conditioning
from distmeta.config import load_config
from distmeta.errors import DatasetError
from distmeta.evaluation import evaluate
from distmeta.experiment import build_experiment
from distmeta.runtime.agreement import RankFailure
from distmeta.runtime.shared_evaluation import shared_conditioning, shared_evaluation, shared_validation
from tests.conftest import TINY_SYNTHETIC_OMNIGLOT
from tests.runtime.test_collective import free_port

# 7 tasks: shares of 3 and 4, and a batch size that splits each share differently from one process
OVERRIDES = [*TINY_SYNTHETIC_OMNIGLOT, "algorithm.test_inner_steps=2", "train.val_tasks=7", "eval.batch_size=2"]


def evaluate_on_two_ranks(rank: int, world_size: int, port: int, out_dir: str, failing_rank: int | None) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        experiment = build_experiment(load_config(None, OVERRIDES))
        params = experiment.initial_meta_parameters()
        failure = RankFailure(rank)
        if rank == failing_rank:  # e.g. this node's copy of the data was unreadable since the ranks last met
            with failure.catching():
                raise DatasetError("omniglot.zip", "unreadable on this node")
        try:
            result = {
                "val": shared_validation(rank, world_size, failure)(experiment, params).to_dict(),
                "test": shared_evaluation(experiment, params, "test", 5, rank, world_size, failure).to_dict(),
            }
        except DatasetError as error:
            result = {"error": str(error), "notes": error.__notes__}
        torch.save(result, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def on_two_ranks(tmp_path, failing_rank=None) -> list[dict]:
    mp.spawn(evaluate_on_two_ranks, args=(2, free_port(), str(tmp_path), failing_rank), nprocs=2)
    return [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]


def test_two_ranks_sharing_the_tasks_hold_the_figures_one_process_gives(tmp_path):
    zero, one = on_two_ranks(tmp_path)
    assert zero == one  # every rank holds the same summary, so every rank takes the same stop decision
    experiment = build_experiment(load_config(None, OVERRIDES))
    params = experiment.initial_meta_parameters()
    for split, tasks in (("val", 7), ("test", 5)):
        alone = evaluate(experiment, params, split, tasks).to_dict()
        assert zero[split]["tasks"] == tasks and zero[split]["inner_steps"] == 2
        for key in ("mean", "ci95", "loss"):
            assert zero[split][key] == pytest.approx(alone[key], abs=1e-6)


def test_an_error_on_one_rank_is_raised_on_every_rank_instead_of_a_partial_result(tmp_path):
    zero, one = on_two_ranks(tmp_path, failing_rank=1)
    assert "unreadable on this node" in zero["error"] and zero["notes"] == ["(raised on rank 1)"]
    assert zero == one


# MMAML on multimodal regression: a task-conditioned algorithm, with no data to read
CONDITIONED = ["task.name=multimodal", "algorithm.name=mmaml", "train.val_tasks=7"]


def conditioning_on_two_ranks(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        experiment = build_experiment(load_config(None, CONDITIONED), check_data=False)
        params = experiment.initial_meta_parameters()
        spread = shared_conditioning(rank, world_size, RankFailure(rank))(experiment, params)
        torch.save(spread, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_sharing_the_conditioning_outputs_hold_the_spread_one_process_gives(tmp_path):
    mp.spawn(conditioning_on_two_ranks, args=(2, free_port(), str(tmp_path)), nprocs=2)
    zero, one = (torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1))
    assert zero == one
    experiment = build_experiment(load_config(None, CONDITIONED), check_data=False)
    alone = validation_conditioning(experiment, experiment.initial_meta_parameters())
    assert alone.keys() == {"val_conditioning_std", "val_conditioning_mean_abs"}
    assert zero == pytest.approx(alone, rel=1e-6) and zero["val_conditioning_std"] > 0
