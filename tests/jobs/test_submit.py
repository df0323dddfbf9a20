"""`distmeta submit` and `distmeta jobs` against a real two-node Ray cluster on loopback.

The cluster is the one `cluster/local_cluster.py` starts: a head and a second
node, each a `ray start` with one CPU, the job server on 127.0.0.1. Every command
runs as a user runs it (a subprocess of the CLI).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distmeta.jobs import local_cluster
from tests.cluster_clients import alive_nodes
from tests.ray_processes import leaves_no_ray_process

TINY = [
    "--set",
    "train.steps=12",
    "--set",
    "train.log_every=6",
    "--set",
    "train.val_every=0",
    "--set",
    "train.checkpoint_every=6",
    "--set",
    "train.meta_batch_size=4",
    "--set",
    "eval.tasks=10",
    "--set",
    "model.hidden_sizes=[8]",
]


def clean_environment(home) -> dict:
    """This process's environment without the Ray settings an earlier in-process cluster left behind."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1", RAY_TRAIN_HEALTH_CHECK_INTERVAL_S="0.2")
    return env


@pytest.fixture(scope="module")
def job_cluster(tmp_path_factory, short_temp, temp_roots):
    """A home as `make run` leaves it (a `ray.init` wrote ~/.ray/auth_token), then the cluster:
    every command below authenticates with that token without being told to."""
    home = tmp_path_factory.mktemp("home")
    made = subprocess.run(
        [
            sys.executable,
            "-c",
            "import ray; ray.init(address='local', num_cpus=1, include_dashboard=False); ray.shutdown()",
        ],
        env={**clean_environment(home), "TMPDIR": short_temp},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0 and (home / ".ray" / "auth_token").exists(), made.stderr
    folder = tmp_path_factory.mktemp("cluster")
    with leaves_no_ray_process(temp_roots, "the job cluster"):
        cluster = local_cluster.start(
            folder, worker_nodes=1, cpus_per_node=1, env=clean_environment(home), temp_root=short_temp
        )
        try:
            yield cluster, home
        finally:
            local_cluster.stop(folder)
    assert local_cluster.processes_of(folder) == []


def distmeta(*args, home, cwd, timeout=180):
    return subprocess.run(
        [sys.executable, "-m", "distmeta", *args],
        cwd=cwd,
        env=clean_environment(home),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def job_id_in(output: str) -> str:
    return output.split("submitted job ", 1)[1].split()[0]


def test_the_cluster_takes_the_token_a_ray_init_left_in_home_and_refuses_a_client_without_it(job_cluster, tmp_path):
    cluster, home = job_cluster
    assert Path(cluster.token_file).read_text() == (home / ".ray" / "auth_token").read_text()
    assert oct(Path(cluster.token_file).stat().st_mode & 0o777) == "0o600"
    assert alive_nodes(cluster, clean_environment(home)) == 2
    refused = distmeta("jobs", "list", "--address", cluster.dashboard_address, home=tmp_path, cwd=tmp_path)
    assert refused.returncode == 2
    assert "requires a Ray authentication token and none was found" in refused.stderr
    assert "ray get-auth-token" in refused.stderr


@pytest.mark.slow
def test_a_token_file_is_presented_and_a_wrong_one_stops_submit_before_anything_is_sent(job_cluster, tmp_path):
    cluster, home = job_cluster
    tokenless = tmp_path / "home"  # no ~/.ray/auth_token and no RAY_AUTH_* here: only --token-file
    tokenless.mkdir()
    listed = distmeta(
        "jobs",
        "list",
        "--address",
        cluster.dashboard_address,
        "--token-file",
        cluster.token_file,
        home=tokenless,
        cwd=tmp_path,
    )
    assert listed.returncode == 0, listed.stderr
    wrong = tmp_path / "wrong_token"
    wrong.write_text("0" * 64)
    refused = distmeta(
        "submit",
        "train",
        *TINY,
        "--name",
        "never-sent",
        "--address",
        cluster.dashboard_address,
        "--token-file",
        str(wrong),
        home=tokenless,
        cwd=tmp_path,
    )
    assert refused.returncode == 2, refused.stderr
    assert f"refused the token of --token-file {wrong} (not this cluster's token)" in refused.stderr
    assert "ray get-auth-token" in refused.stderr and "submitted job" not in refused.stdout
    jobs = distmeta("jobs", "list", "--address", cluster.dashboard_address, home=home, cwd=tmp_path)
    assert jobs.returncode == 0 and "never-sent" not in jobs.stdout  # nothing reached the cluster


def test_a_submitted_training_run_succeeds_and_the_jobs_commands_show_it(job_cluster, tmp_path):
    cluster, home = job_cluster
    storage = tmp_path / "runs"
    submitted = distmeta(
        "submit",
        "train",
        *TINY,
        "--workers",
        "2",
        "--storage",
        str(storage),
        "--name",
        "tiny",
        "--address",
        cluster.dashboard_address,
        "--wait",
        home=home,
        cwd=tmp_path,
    )
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job_id = job_id_in(submitted.stdout)
    assert "step 12/12" in submitted.stdout and f"job {job_id} SUCCEEDED" in submitted.stdout
    run = storage / "tiny"
    assert list(run.glob("checkpoint_*/checkpoints/step_00000012.pt"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 12 and summary["nodes"] == 2  # one worker on each node

    listed = distmeta("jobs", "list", "--address", cluster.dashboard_address, home=home, cwd=tmp_path)
    assert job_id in listed.stdout and "SUCCEEDED" in listed.stdout and str(run) in listed.stdout
    status = distmeta("jobs", "status", job_id, "--address", cluster.dashboard_address, home=home, cwd=tmp_path)
    assert "SUCCEEDED" in status.stdout and "python -m distmeta train" in status.stdout
    logs = distmeta("jobs", "logs", job_id, "--address", cluster.dashboard_address, home=home, cwd=tmp_path)
    assert "step 12/12" in logs.stdout and "meta-test" in logs.stdout


def test_an_invalid_config_is_refused_before_anything_is_sent(job_cluster, tmp_path):
    cluster, home = job_cluster
    before = distmeta("jobs", "list", "--address", cluster.dashboard_address, home=home, cwd=tmp_path).stdout
    refused = distmeta(
        "submit",
        "train",
        "--set",
        "algorithm.inner_lr=-1",
        "--address",
        cluster.dashboard_address,
        home=home,
        cwd=tmp_path,
    )
    assert refused.returncode == 2
    assert "algorithm.inner_lr: must be positive, got -1.0" in refused.stderr
    after = distmeta("jobs", "list", "--address", cluster.dashboard_address, home=home, cwd=tmp_path).stdout
    assert after.count("raysubmit_") == before.count("raysubmit_")


def test_a_job_that_fails_on_the_cluster_ends_failed_and_submit_exits_with_its_message(job_cluster, tmp_path):
    cluster, home = job_cluster
    # valid here, but the two one-CPU nodes cannot hold three workers: only the cluster can tell
    failed = distmeta(
        "submit",
        "train",
        *TINY,
        "--workers",
        "3",
        "--storage",
        str(tmp_path / "runs"),
        "--address",
        cluster.dashboard_address,
        "--wait",
        home=home,
        cwd=tmp_path,
    )
    assert failed.returncode == 1
    job_id = job_id_in(failed.stdout)
    assert (
        f"job {job_id} FAILED: distmeta train: error: --workers: 3 worker(s) x (1 CPU, 0 GPU) do not fit: "
        f"the cluster holds at most 2 such worker(s)"
    ) in failed.stderr
    status = distmeta("jobs", "status", job_id, "--address", cluster.dashboard_address, home=home, cwd=tmp_path)
    assert "FAILED" in status.stdout


def test_jobs_stop_stops_a_long_running_job(job_cluster, tmp_path):
    cluster, home = job_cluster
    submitted = distmeta(
        "submit",
        "train",
        "--set",
        "train.steps=1000000",
        "--storage",
        str(tmp_path / "runs"),
        "--name",
        "long",
        "--address",
        cluster.dashboard_address,
        home=home,
        cwd=tmp_path,
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = job_id_in(submitted.stdout)
    metrics = tmp_path / "runs" / "long" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not metrics.exists() and time.monotonic() < deadline:  # training has started
        time.sleep(0.5)
    assert metrics.exists()
    stopped = distmeta("jobs", "stop", job_id, "--address", cluster.dashboard_address, home=home, cwd=tmp_path)
    assert stopped.returncode == 0 and f"job {job_id} STOPPED" in stopped.stdout
    status = distmeta("jobs", "status", job_id, "--address", cluster.dashboard_address, home=home, cwd=tmp_path)
    assert "STOPPED" in status.stdout


def test_an_unreachable_address_is_named_with_a_hint(tmp_path):
    address = f"http://127.0.0.1:{local_cluster.free_ports(1)[0]}"
    result = distmeta("jobs", "list", "--address", address, home=tmp_path, cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert f"--address {address}: no Ray job server answered" in result.stderr
    assert "Is the cluster's dashboard running and reachable from here?" in result.stderr


def test_an_unknown_job_id_is_named(job_cluster, tmp_path):
    cluster, home = job_cluster
    result = distmeta(
        "jobs", "logs", "raysubmit_nosuchjob", "--address", cluster.dashboard_address, home=home, cwd=tmp_path
    )
    assert result.returncode == 2 and "job raysubmit_nosuchjob: no such job" in result.stderr


def test_a_submitted_search_runs_its_trials_on_the_cluster(job_cluster, tmp_path):
    cluster, home = job_cluster
    # one trial: that a search runs several is the tuning tests' part; here, that one submitted runs on the cluster
    (tmp_path / "space.yaml").write_text("algorithm.inner_lr: {grid: [0.01]}\n")
    submitted = distmeta(
        "submit",
        "tune",
        "--space",
        "space.yaml",
        *TINY,
        "--set",
        "train.val_every=6",
        "--set",
        "train.val_tasks=10",
        "--trials",
        "1",
        "--scheduler",
        "fifo",
        "--storage",
        str(tmp_path / "runs"),
        "--name",
        "search",
        "--address",
        cluster.dashboard_address,
        "--wait",
        home=home,
        cwd=tmp_path,
    )
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    assert "python -m distmeta tune --space space.yaml" in submitted.stdout
    results = json.loads((tmp_path / "runs" / "search" / "results.json").read_text())
    assert [(trial["algorithm.inner_lr"], trial["status"]) for trial in results["trials"]] == [(0.01, "finished")]


def test_a_bad_search_space_is_refused_before_the_cluster_is_contacted(tmp_path):
    (tmp_path / "space.yaml").write_text("algorithm.inner_lr: {loguniform: [0, 1]}\n")
    unreachable = f"http://127.0.0.1:{local_cluster.free_ports(1)[0]}"
    refused = distmeta(
        "submit", "tune", "--space", "space.yaml", "--address", unreachable, home=tmp_path, cwd=tmp_path, timeout=60
    )
    assert refused.returncode == 2
    assert "space.yaml" in refused.stderr and "algorithm.inner_lr" in refused.stderr
    assert "no Ray job server answered" not in refused.stderr
