"""A learned optimiser meta-trained on Ray Train workers (2 CPUs, gloo): no mock of Ray."""

import json

import pytest
import torch

from distmeta.config import load_config
from distmeta.runtime.launcher import ClusterRequest, train_distributed
from distmeta.training.trainer import train
from tests.learned_optimizer_runs.conftest import TINY

PES = [*TINY, "algorithm.learned_optimizer.estimator=pes", "algorithm.learned_optimizer.pairs=2"]


def on_ray(storage, workers, steps, lines):
    config = load_config(None, [*PES, f"train.steps={steps}"])
    request = ClusterRequest(workers=workers, storage=str(storage), name="run")
    return train_distributed(config, request, print_fn=lines.append, final_eval=False)


def in_process(folder, steps):
    config = load_config(None, [*PES, f"train.steps={steps}", f"train.run_dir={folder}"])
    return train(config, print_fn=lambda *_: None, final_eval=False)


@pytest.mark.slow
def test_two_workers_equal_one_and_a_resume_with_one_worker_continues_their_unrolls(cluster, tmp_path):
    lines = []
    two = on_ray(tmp_path / "ray", 2, 2, lines)  # unrolls 0 | 1, 2: each rank its own, with their PES pairs
    one = in_process(tmp_path / "one", 2)
    for name in one.meta_params:
        torch.testing.assert_close(two.meta_params[name], one.meta_params[name], atol=1e-6, rtol=1e-5)
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
