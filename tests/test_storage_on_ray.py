"""Runs in a bucket: moto's S3 server on loopback (see tests/s3_server.py) stands in for S3.

A bucket that is not there, or whose credentials may only read, stops the run on the
driver, naming the URI, before Ray or any worker starts. A run whose driver is killed
resumes from the bucket with the same command.
"""

import re
import signal
import subprocess
import time

import pytest
import ray

from distmeta.api import load
from distmeta.config import config_hash, load_config
from distmeta.errors import ConfigError
from distmeta.knowledge import KnowledgeStore
from distmeta.runtime.launcher import ClusterRequest, train_distributed
from distmeta.storage import location
from distmeta.training.checkpoint import checkpoint_files, newest_readable_checkpoint
from distmeta.training.trainer import train
from tests.knowledge.helpers import fill, sinusoid_run
from tests.s3_server import s3_server, writer_environment
from tests.train_command import started_train

TINY = [
    "train.steps=80",
    "train.meta_batch_size=2",
    "train.log_every=10",
    "train.val_every=0",
    "train.checkpoint_every=10",
    "model.hidden_sizes=[8]",
]


@pytest.fixture(scope="module")
def s3():
    """The server, its writer's credentials in the environment before any Ray cluster of the module starts
    (its workers inherit them, as a cluster's nodes have their own)."""
    with s3_server() as server, writer_environment(server):
        yield server


@pytest.fixture(scope="module")
def s3_cluster(s3, cluster):
    """The module's Ray cluster, started after the credentials are in the environment."""
    yield s3


def request_for(storage: str, name: str = "run") -> ClusterRequest:
    return ClusterRequest(workers=1, storage=storage, name=name)


def test_a_bucket_that_does_not_exist_stops_the_run_naming_it_before_ray_starts(s3):
    missing = s3.uri("runs", bucket="no-such-bucket")
    with pytest.raises(ConfigError, match=f"--storage: {missing.replace('?', '[?]')} is not writable"):
        train_distributed(load_config(None, TINY), request_for(missing), print_fn=lambda *_: None)
    assert not ray.is_initialized()


def test_credentials_that_may_only_read_stop_the_run_naming_the_bucket_before_ray_starts(s3, monkeypatch):
    for name, value in s3.reader.items():
        monkeypatch.setenv(name, value)
    refused = r"--storage: s3://distmeta-runs/read-only\?.* is not writable .*ACCESS_DENIED"
    with pytest.raises(ConfigError, match=refused):
        train_distributed(load_config(None, TINY), request_for(s3.uri("read-only")), print_fn=lambda *_: None)
    assert not ray.is_initialized()
    assert not location(s3.uri("read-only")).children()


def test_a_run_in_one_process_writes_to_a_bucket_and_resumes_from_it(s3):
    run = location(s3.uri("in-process/run"))
    overrides = [*TINY, f"train.run_dir={run}"]
    train(load_config(None, [*overrides, "train.steps=20"]), print_fn=lambda *_: None, final_eval=False)
    lines = []
    resumed = train(load_config(None, [*overrides, "train.steps=40"]), print_fn=lines.append, final_eval=False)
    assert resumed.steps == 40 and resumed.run_dir == run
    assert any("resuming from" in line and "(step 20 of 40)" in line for line in lines), lines
    assert [path.name for path in checkpoint_files(run)] == [f"step_{step:08d}.pt" for step in (10, 20, 30, 40)]
    assert sorted(child.name for child in run.children()) == [
        "checkpoints",
        "config.yaml",
        "metrics.jsonl",
        "summary.json",
        "tensorboard",
    ]
    assert len(run.glob("tensorboard/events.out.tfevents.*")) == 2  # one per process, as on a disk


def test_a_knowledge_base_in_a_bucket_is_written_and_read_back_as_on_a_disk(s3):
    run = location(s3.uri("knowledge/run"))
    config, experiment, params = sinusoid_run(run)
    written = fill(run, config, experiment, params, tasks=4)
    assert written.parent == run / "knowledge" and written.name.endswith(".parquet")
    header, records = KnowledgeStore(run).load(config_hash(config), step=0)
    assert header.step == 0 and len(records) == 4
    assert load(str(run), device="cpu").run_dir == run  # where `distmeta kb` finds the store


def distmeta_train(storage: str, address: str, home) -> subprocess.Popen:
    """`distmeta train` as a user runs it against a running cluster."""
    # HOME: Ray's token is in the cluster's home
    return started_train(storage, TINY, {"HOME": str(home)}, "--address", address)


def test_a_run_in_a_bucket_whose_driver_was_killed_resumes_from_the_bucket(s3_cluster, ray_home):
    storage = s3_cluster.uri("runs")
    run = location(storage) / "run"
    driver = distmeta_train(storage, ray.get_runtime_context().gcs_address, ray_home)
    deadline = time.monotonic() + 300  # a few seconds on an idle machine; minutes when it is shared
    while not checkpoint_files(run) and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)  # its job's actors (the trainer, its workers) go with it
    driver.wait()
    saved = newest_readable_checkpoint(run)
    assert saved is not None, driver.stdout.read()
    killed_at = saved["step"]
    assert killed_at < 80, "the run ended before the kill: the test proves nothing"

    lines = []
    result = train_distributed(load_config(None, TINY), request_for(storage), print_fn=lines.append, final_eval=False)
    # The killed driver's workers die a moment after it (Ray reaps a dead job's actors
    # asynchronously), so they may still write the next checkpoint: the resume takes the newest.
    resumed_from = resumed_step(lines, run)
    assert killed_at <= resumed_from < 80, lines
    assert result.steps == 80 and result.run_dir == run
    assert newest_readable_checkpoint(run)["step"] == 80
    metrics = (run / "metrics.jsonl").read_text()
    assert f'"event": "resumed", "from_step": {resumed_from}' in metrics and '"step": 80' in metrics
    assert (run / "summary.json").is_file() and (run / "workers.json").is_file()
    assert run.glob("tensorboard/events.out.tfevents.*")


def resumed_step(lines: list[str], run) -> int:
    """The step of the checkpoint the run says it resumed from."""
    pattern = re.compile(rf"resuming {re.escape(str(run))} from the checkpoint of step (\d+) of 80")
    found = [int(match.group(1)) for line in lines if (match := pattern.search(line))]
    assert found, lines
    return found[0]
