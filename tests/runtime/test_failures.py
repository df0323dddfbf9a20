"""Failures mid-run on a real local Ray cluster: a worker dies, the driver is killed.

Either way the run resumes from its latest checkpoint and ends with exactly the
parameters of a run that was never interrupted.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ray.cloudpickle
import torch

import distmeta.runtime.launcher
from distmeta.config import load_config
from distmeta.runtime.launcher import ClusterRequest, train_distributed
from distmeta.training.checkpoint import newest_readable_checkpoint
from distmeta.training.checkpoint import checkpoint_files
from tests.ray_processes import kill_processes_of

CHECKPOINTED = ["train.steps=12", "train.meta_batch_size=4", "train.log_every=4", "train.val_every=0",
                "train.checkpoint_every=4", "model.hidden_sizes=[16, 16]"]
DIE_BEFORE_STEP = 9  # the update after checkpoint 8: its report has had no time to reach Ray's controller

# Ray's workers cannot import this test module by name; ship its functions by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def worker_that_dies_once(loop_config):
    """The real per-worker function, except that rank 1 exits abruptly (as if killed)
    just before update DIE_BEFORE_STEP, the first time only (a marker file remembers)."""
    import distmeta.runtime.worker as worker

    marker = Path(loop_config["run_dir"] + ".died")
    real_step = worker.distributed_meta_step

    def dying_step(rank, world_size):
        step = real_step(rank, world_size)

        def maybe_die(experiment, state):
            if rank == 1 and state.step == DIE_BEFORE_STEP and not marker.exists():
                marker.touch()
                os._exit(1)
            return step(experiment, state)

        return maybe_die

    worker.distributed_meta_step = dying_step
    worker.train_worker(loop_config)


def distributed(storage, name, overrides, workers=2):
    config = load_config(None, overrides)
    request = ClusterRequest(workers=workers, storage=str(storage), name=name)
    return train_distributed(config, request, print_fn=lambda *_: None, final_eval=False)


def resumed_from(run_dir: Path) -> list[int]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["from_step"] for r in records if r.get("event") == "resumed"]


def test_a_killed_worker_is_replaced_and_the_run_ends_as_if_it_never_died(cluster, tmp_path, monkeypatch):
    uninterrupted = distributed(tmp_path, "whole", CHECKPOINTED)
    monkeypatch.setattr(distmeta.runtime.launcher, "train_worker", worker_that_dies_once)
    survived = distributed(tmp_path, "killed", CHECKPOINTED)
    assert (tmp_path / "killed.died").exists(), "the worker never died: the test proves nothing"
    # checkpoint 8 was reported milliseconds before the death: found in storage even if
    # Ray's controller missed the report, so no more than the steps after it are lost
    assert resumed_from(tmp_path / "killed") == [8]
    assert survived.steps == 12
    for name, value in uninterrupted.meta_params.items():
        assert torch.equal(survived.meta_params[name], value), name


LONG = ["train.steps=400", "train.meta_batch_size=4", "train.log_every=200", "train.val_every=0",
        "train.checkpoint_every=40", "model.hidden_sizes=[8]"]


def distmeta_train(storage, ray_temp, *extra):
    """`distmeta train` as a user runs it, with its own Ray temp folder and home."""
    args = [sys.executable, "-m", "distmeta", "train", "--workers", "1", "--storage", str(storage),
            "--name", "run", "--no-eval", *[arg for item in LONG for arg in ("--set", item)], *extra]
    env = {**os.environ, "RAY_TMPDIR": ray_temp, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_killed_driver_resumes_with_the_same_command_and_ends_as_if_never_killed(cluster, tmp_path):
    storage = tmp_path / "runs"
    ray_temp = tempfile.mkdtemp(prefix="dmk", dir="/tmp")  # short: Ray's socket paths must stay short
    try:
        driver = distmeta_train(storage, ray_temp)
        deadline = time.monotonic() + 120
        while not checkpoint_files(storage / "run") and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        kill_processes_of(ray_temp)
        saved = newest_readable_checkpoint(storage / "run")
        assert saved is not None, driver.stdout.read()
        killed_at = saved["step"]
        assert killed_at < 400, "the run ended before the kill: the test proves nothing"

        again = distmeta_train(storage, ray_temp)
        output, _ = again.communicate(timeout=300)
        assert again.returncode == 0, output
        assert f"from the checkpoint of step {killed_at} of 400" in output
    finally:
        kill_processes_of(ray_temp)
        shutil.rmtree(ray_temp, ignore_errors=True)
    resumed = newest_readable_checkpoint(storage / "run")
    uninterrupted = distributed(tmp_path, "whole", LONG, workers=1)
    assert resumed["step"] == 400
    for name, value in uninterrupted.meta_params.items():
        assert torch.equal(resumed["meta_parameters"][name], value), name
