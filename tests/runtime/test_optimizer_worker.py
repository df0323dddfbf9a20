"""A learned optimiser meta-trained on Ray Train workers (2 CPUs, gloo): no mock of Ray."""

import json
import sys
import time

import pytest
import ray.cloudpickle
import torch
from ray.train.torch import TorchConfig

import distmeta.runtime.launcher
from distmeta.config import load_config
from distmeta.errors import RunTakenOverError
from distmeta.runtime.launcher import ClusterRequest, train_distributed
from distmeta.training.checkpoint import checkpoint_files
from distmeta.training.trainer import train
from tests.learned_optimizer_runs.conftest import TINY

# Ray's workers cannot import this test module by name; ship its functions by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
COLLECTIVE_TIMEOUT_S = TorchConfig().timeout_s  # how long a rank left waiting in a collective would wait
PROMPTLY_S = 120  # a whole run's start here takes ~20 s on a loaded machine

PES = [*TINY, "algorithm.learned_optimizer.estimator=pes", "algorithm.learned_optimizer.pairs=2"]


def on_ray(storage, workers, steps, lines, *overrides, final_eval=False):
    config = load_config(None, [*PES, f"train.steps={steps}", *overrides])
    request = ClusterRequest(workers=workers, storage=str(storage), name="run")
    return train_distributed(config, request, print_fn=lines.append, final_eval=final_eval)


def in_process(folder, steps, *overrides, final_eval=False):
    config = load_config(None, [*PES, f"train.steps={steps}", f"train.run_dir={folder}", *overrides])
    return train(config, print_fn=lambda *_: None, final_eval=final_eval)


def validations(run_dir) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(record["step"], record["val_loss"]) for record in records if "val_loss" in record]


@pytest.mark.slow
def test_two_workers_equal_one_and_a_resume_with_one_worker_continues_their_unrolls(cluster, tmp_path):
    lines = []
    # unrolls 0 | 1, 2: each rank its own, with their PES pairs; the validation's and the
    # meta-test's 2 unrolls: one each
    two = on_ray(tmp_path / "ray", 2, 2, lines, "train.val_every=2", final_eval=True)
    one = in_process(tmp_path / "one", 2, "train.val_every=2", final_eval=True)
    for name in one.meta_params:
        torch.testing.assert_close(two.meta_params[name], one.meta_params[name], atol=1e-6, rtol=1e-5)
    [(step, val_loss)] = validations(tmp_path / "ray" / "run")
    assert [(step, pytest.approx(val_loss, rel=1e-5))] == validations(tmp_path / "one")
    assert (two.test.split, two.test.tasks) == ("test", 2) == (one.test.split, one.test.tasks)
    assert two.test.mean == pytest.approx(one.test.mean, rel=1e-5)
    assert two.test.ci95 == pytest.approx(one.test.ci95, rel=1e-4)
    workers = json.loads((tmp_path / "ray" / "run" / "workers.json").read_text())
    assert [worker["rank"] for worker in workers] == [0, 1]

    resumed = on_ray(tmp_path / "ray", 1, 4, lines)  # the same unrolls, all on one worker now
    assert any("resuming" in line and "3 unroll(s) at optimisee steps 4, 4, 4 of 6 continue" in line for line in lines)
    whole = in_process(tmp_path / "whole", 4)
    assert resumed.steps == 4
    for name in whole.meta_params:
        torch.testing.assert_close(resumed.meta_params[name], whole.meta_params[name], atol=1e-6, rtol=1e-5)
    records = [json.loads(line) for line in (tmp_path / "ray" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [record.get("step") for record in records if "step" in record] == [2, 4]
    assert records[-1]["rate_unit"] == "unroll steps"


def worker_whose_run_another_driver_claims_at_step_3(loop_config):
    """The real learned-optimiser worker, except that another session claims the run (as a
    second driver started on it would) while rank 0 takes step 3."""
    import distmeta.runtime.optimizer_worker as worker
    from distmeta.runtime.session import claim_run
    from distmeta.storage import location

    real_step = worker.rank_meta_step

    def claimed_step(run, state, rank, world_size, *arguments, **keywords):
        if rank == 0 and state.step == 3:
            claim_run(location(loop_config["run_dir"]))
        return real_step(run, state, rank, world_size, *arguments, **keywords)

    worker.rank_meta_step = claimed_step
    worker.train_worker(loop_config)


@pytest.mark.slow
def test_a_run_another_driver_claims_stops_every_rank_promptly_without_writing_more(cluster, tmp_path, monkeypatch):
    # rank 0 is refused its log of step 4 while rank 1 goes on to the checkpoint's gather:
    # before the ranks agreed on rank 0's errors, rank 1 waited there for the collective's timeout
    claimed = worker_whose_run_another_driver_claims_at_step_3
    monkeypatch.setattr(distmeta.runtime.launcher, "optimizer_train_worker", claimed)
    started = time.monotonic()
    with pytest.raises(RunTakenOverError) as raised:
        on_ray(tmp_path, 2, 4, [])
    took = time.monotonic() - started
    assert took < PROMPTLY_S < COLLECTIVE_TIMEOUT_S / 10, f"{took:.0f} s: a rank waited in a collective"
    assert "(raised on rank 0)" in raised.value.__notes__
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == [2]
    assert [p.name for p in checkpoint_files(tmp_path / "run")] == ["step_00000002.pt"]
