"""Failures mid-run on a real local Ray cluster: a worker dies, the driver is killed,
one rank alone meets a user error (a missing file, a full disk).

A crash resumes from the latest checkpoint and ends with exactly the parameters of
a run that was never interrupted; a user error on one rank stops every rank at once
with that error, well before a collective's timeout.
"""

import errno
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import pytest
import ray.cloudpickle
import torch
from ray.train.torch import TorchConfig

import distmeta.runtime.launcher
import distmeta.runtime.worker
from distmeta.config import load_config
from distmeta.errors import DatasetError, DistmetaError, RunTakenOverError, StorageError
from distmeta.runtime.launcher import ClusterRequest, train_distributed
from distmeta.training.checkpoint import CheckpointSkippedWarning, checkpoint_files, newest_readable_checkpoint
from distmeta.training.trainer import train
from tests.ray_processes import kill_processes_of
from tests.train_command import started_train

CHECKPOINTED = [
    "train.steps=12",
    "train.meta_batch_size=4",
    "train.log_every=4",
    "train.val_every=0",
    "train.checkpoint_every=4",
    "model.hidden_sizes=[16, 16]",
]
DIE_BEFORE_STEP = 9  # the update after checkpoint 8: its report has had no time to reach Ray's controller

# Ray's workers cannot import this test module by name; ship its functions by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def worker_that_dies_once(loop_config):
    """The real per-worker function, except that rank 1 exits abruptly (as if killed)
    just before update DIE_BEFORE_STEP, the first time only (a marker file remembers)."""
    import distmeta.runtime.worker as worker

    marker = Path(loop_config["run_dir"] + ".died")
    real_step = worker.distributed_meta_step

    def dying_step(rank, *arguments, **keywords):
        step = real_step(rank, *arguments, **keywords)

        def maybe_die(experiment, state):
            if rank == 1 and state.step == DIE_BEFORE_STEP and not marker.exists():
                marker.touch()
                os._exit(1)
            return step(experiment, state)

        return maybe_die

    worker.distributed_meta_step = dying_step
    worker.train_worker(loop_config)


def worker_whose_rank_1_misses_a_file_at_step_3(loop_config):
    """The real per-worker function, except that rank 1 alone finds a data file missing
    when it samples the tasks of step 3 (as on a node without that file)."""
    import distmeta.runtime.step as step

    real_meta_batch = step.meta_batch

    def meta_batch(experiment, at_step, indices=None):
        if indices is not None and indices.start > 0 and at_step == 3:
            raise DatasetError("/data/omniglot/images_background.zip", "does not exist on this node")
        return real_meta_batch(experiment, at_step, indices)

    step.meta_batch = meta_batch
    import distmeta.runtime.worker as worker

    worker.train_worker(loop_config)


def worker_whose_storage_fills_up_copying_the_checkpoint_of_step_4(loop_config):
    """The real per-worker function, except that the storage fills up while Ray copies
    rank 0's checkpoint of step 4 there: half of its file is written, then ENOSPC."""
    import ray.train.v2._internal.execution.storage as ray_storage

    real_copy = ray_storage._pyarrow_fs_copy_files

    def copy(source, destination, **kwargs):
        written = Path(source) / "checkpoints" / "step_00000004.pt"
        if written.exists():
            target = Path(destination) / "checkpoints" / written.name
            target.parent.mkdir(parents=True)
            target.write_bytes(written.read_bytes()[: written.stat().st_size // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_copy(source, destination, **kwargs)

    ray_storage._pyarrow_fs_copy_files = copy
    import distmeta.runtime.worker as worker

    worker.train_worker(loop_config)


def worker_whose_run_another_driver_claims_at_step_3(loop_config):
    """The real per-worker function, except that another session claims the run (as a second
    driver started on it would) while rank 0 takes step 3."""
    import distmeta.runtime.worker as worker
    from distmeta.runtime.session import claim_run
    from distmeta.storage import location

    real_step = worker.distributed_meta_step

    def claimed_step(rank, *arguments, **keywords):
        step = real_step(rank, *arguments, **keywords)

        def maybe_claim(experiment, state):
            if rank == 0 and state.step == 3:
                claim_run(location(loop_config["run_dir"]))
            return step(experiment, state)

        return maybe_claim

    worker.distributed_meta_step = claimed_step
    worker.train_worker(loop_config)


COLLECTIVE_TIMEOUT_S = TorchConfig().timeout_s  # how long a rank left waiting in a collective would wait
PROMPTLY_S = 120  # a whole run's start here takes ~20 s on a loaded machine
ONE_RANK_FAILS = [
    "train.steps=8",
    "train.meta_batch_size=4",
    "train.log_every=2",
    "train.val_every=0",
    "train.checkpoint_every=2",
    "model.hidden_sizes=[8]",
]


def failed_promptly(failing_worker, storage, monkeypatch) -> pytest.ExceptionInfo:
    """Run ONE_RANK_FAILS on two workers running `failing_worker`; the error it ended with,
    checked to have come long before a rank left in a collective would have timed out."""
    monkeypatch.setattr(distmeta.runtime.launcher, "train_worker", failing_worker)
    started = time.monotonic()
    with pytest.raises(DistmetaError) as raised:
        distributed(storage, "one-rank", ONE_RANK_FAILS)
    took = time.monotonic() - started
    assert took < PROMPTLY_S < COLLECTIVE_TIMEOUT_S / 10, f"{took:.0f} s: a rank waited in a collective"
    return raised


@pytest.mark.slow
def test_a_user_error_on_rank_1_only_stops_every_rank_promptly_with_that_error(cluster, tmp_path, monkeypatch):
    raised = failed_promptly(worker_whose_rank_1_misses_a_file_at_step_3, tmp_path, monkeypatch)
    assert isinstance(raised.value, DatasetError), raised.value
    assert raised.value.path == "/data/omniglot/images_background.zip"
    assert "(raised on rank 1)" in raised.value.__notes__
    # lost: step 3, after the checkpoint of step 2 (the newest, whole)
    assert [p.name for p in checkpoint_files(tmp_path / "one-rank")] == ["step_00000002.pt"]


@pytest.mark.slow
def test_a_full_storage_on_rank_0_only_stops_every_rank_promptly_and_the_run_resumes_from_the_checkpoint_before(
    cluster, tmp_path, monkeypatch
):
    raised = failed_promptly(worker_whose_storage_fills_up_copying_the_checkpoint_of_step_4, tmp_path, monkeypatch)
    assert isinstance(raised.value, StorageError), raised.value
    assert str(raised.value).startswith(
        f"{tmp_path / 'one-rank'}: the checkpoint of step 4 could not be written "
        f"there ([Errno 28] No space left on device)"
    )
    assert "(raised on rank 0)" in raised.value.__notes__
    # lost: steps 3 and 4; the storage holds the checkpoint of step 2, whole, and half of that of step 4
    truncated = checkpoint_files(tmp_path / "one-rank")[-1]
    assert truncated.name == "step_00000004.pt"
    monkeypatch.setattr(distmeta.runtime.launcher, "train_worker", distmeta.runtime.worker.train_worker)
    lines = []
    with pytest.warns(CheckpointSkippedWarning, match=f"skipping {truncated}") as warned:
        resumed = train_distributed(
            load_config(None, ONE_RANK_FAILS),
            ClusterRequest(workers=2, storage=str(tmp_path), name="one-rank"),
            print_fn=lines.append,
            final_eval=False,
        )
    assert any("from the checkpoint of step 2 of 8" in line for line in lines)
    assert resumed.steps == 8 and resumed_from(tmp_path / "one-rank") == [2]
    assert [w.category for w in warned].count(CheckpointSkippedWarning) == 1  # said once, not at each read


@pytest.mark.slow
def test_a_run_another_driver_claims_stops_every_rank_promptly_without_writing_more(cluster, tmp_path, monkeypatch):
    raised = failed_promptly(worker_whose_run_another_driver_claims_at_step_3, tmp_path, monkeypatch)
    assert isinstance(raised.value, RunTakenOverError), raised.value
    assert raised.value.path == str(tmp_path / "one-rank")
    assert "(raised on rank 0)" in raised.value.__notes__
    # the claim came during step 3: the log of step 4 and its checkpoint were left to the new owner
    records = [json.loads(line) for line in (tmp_path / "one-rank" / "metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == [2]
    assert [p.name for p in checkpoint_files(tmp_path / "one-rank")] == ["step_00000002.pt"]


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


LONG = [
    "train.steps=200",
    "train.meta_batch_size=4",
    "train.log_every=200",
    "train.val_every=0",
    "train.checkpoint_every=40",
    "model.hidden_sizes=[8]",
]


def distmeta_train(storage, ray_temp, *extra):
    """`distmeta train` as a user runs it, with its own Ray temp folder and home."""
    return started_train(storage, LONG, {"RAY_TMPDIR": ray_temp}, *extra)


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
        assert killed_at < 200, "the run ended before the kill: the test proves nothing"

        again = distmeta_train(storage, ray_temp)
        output, _ = again.communicate(timeout=300)
        assert again.returncode == 0, output
        assert f"from the checkpoint of step {killed_at} of 200" in output
    finally:
        kill_processes_of(ray_temp)
        shutil.rmtree(ray_temp, ignore_errors=True)
    resumed = newest_readable_checkpoint(storage / "run")
    # the uninterrupted run, in one process: one worker on Ray equals it bit for bit (test_distributed)
    whole = load_config(None, [*LONG, f"train.run_dir={tmp_path / 'whole'}"])
    uninterrupted = train(whole, print_fn=lambda *_: None, final_eval=False)
    assert resumed["step"] == 200
    for name, value in uninterrupted.meta_params.items():
        assert torch.equal(resumed["meta_parameters"][name], value), name
