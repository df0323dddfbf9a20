"""Ray Tune searches on a real local Ray cluster (2 CPUs): each trial a distributed run."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from distmeta.config import load_config
from distmeta.errors import ConfigError
from distmeta.tuning.search import TuneRequest, run_search
from distmeta.tuning.space import parse_space
from tests.ray_processes import kill_processes_of

QUICK = [
    "train.steps=40",
    "train.meta_batch_size=4",
    "train.log_every=20",
    "train.val_every=20",
    "train.val_tasks=20",
    "model.hidden_sizes=[16, 16]",
]


def search_of_two_rates(storage):
    """A search of two inner rates, one of them diverging: two trials, at once on the 2 CPUs."""
    base = load_config(None, QUICK)
    space = parse_space({"algorithm.inner_lr": {"grid": [0.01, 1e30]}}, base)
    request = TuneRequest(trials=1, scheduler="fifo", storage=str(storage), name="lr")
    return run_search(base, space, request, print_fn=lambda *_: None)


@pytest.fixture(scope="module")
def rate_search(cluster, tmp_path_factory):
    """The search of two rates; the tests below read its result (and its folder)."""
    storage = tmp_path_factory.mktemp("search")
    return storage / "lr", search_of_two_rates(storage)


def test_a_search_ranks_a_sensible_inner_rate_above_a_diverging_one_and_survives_it(rate_search):
    folder, result = rate_search
    rates = [outcome.values["algorithm.inner_lr"] for outcome in result.ranked]
    assert rates == [0.01, 1e30]  # ranked, and the diverged trial did not end the search
    diverged = result.ranked[-1]
    assert diverged.values["algorithm.inner_lr"] == 1e30
    # the worker's own error, by type, as the trial's status (its message cut before the seed)
    assert diverged.metric is None and re.fullmatch(
        r"failed: NonFiniteLossError: meta-loss is (nan|inf) at step 0", diverged.status
    ), diverged.status
    assert result.ranked[0].status == "finished"

    saved = json.loads((folder / "results.json").read_text())
    assert [trial["algorithm.inner_lr"] for trial in saved["trials"]] == rates
    assert (folder / "results.csv").read_text().startswith("rank,trial,algorithm.inner_lr,val_mse")
    assert (folder / "search.png").stat().st_size > 0

    best = load_config(result.best_config_path, [])
    assert best.algorithm.inner_lr == rates[0] and best.train.steps == 40


def test_the_same_search_run_again_ranks_its_trials_as_before_without_running_them(rate_search):
    # its failed trial, restored, has no config on Tune's result: its values come from its folder
    folder, first = rate_search
    again = search_of_two_rates(folder.parent)
    assert [(o.trial_id, o.values, o.status) for o in again.ranked] == [
        (o.trial_id, o.values, o.status) for o in first.ranked
    ]
    starts = [len(log.read_text().splitlines()) for log in (folder / "trials").glob("*/starts.log")]
    assert starts and all(count == 1 for count in starts), starts


def test_the_best_config_trains_with_distmeta_train(rate_search, tmp_path):
    _, result = rate_search
    trained = subprocess.run(
        [
            sys.executable,
            "-m",
            "distmeta",
            "train",
            str(result.best_config_path),
            "--in-process",
            "--no-eval",
            "--run-dir",
            str(tmp_path / "trained"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert trained.returncode == 0, trained.stderr
    assert "step 40/40" in trained.stdout


def test_a_trial_that_can_never_fit_is_refused_before_any_trial_starts(cluster, tmp_path):
    base = load_config(None, QUICK)
    space = parse_space({"algorithm.inner_lr": {"grid": [0.01]}}, base)
    with pytest.raises(
        ConfigError,
        match=r"--workers-per-trial: one trial's 3 worker\(s\) x \(1 CPU, 0 GPU\) do "
        r"not fit: the cluster holds at most 2 such worker\(s\)",
    ):
        run_search(base, space, TuneRequest(workers_per_trial=3, storage=str(tmp_path), name="big"))
    assert not (tmp_path / "big").exists()


def distmeta(*args, cwd, env=None):
    return subprocess.run(
        [sys.executable, "-m", "distmeta", *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )


def test_space_file_errors_are_named_before_anything_starts(tmp_path):
    (tmp_path / "space.yaml").write_text("algorithm.inner_lr: {loguniform: [0, 1.0]}\n")
    result = distmeta("tune", "--space", "space.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert "space.yaml: algorithm.inner_lr: loguniform needs a positive low bound" in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_an_interrupted_search_resumes_without_rerunning_its_finished_trial(tmp_path):
    (tmp_path / "space.yaml").write_text("algorithm.inner_lr: {grid: [0.01, 0.03]}\n")
    args = [
        "tune",
        "--space",
        "space.yaml",
        "--trials",
        "1",
        # a trial takes both CPUs, so that one runs at a time; one worker process, not two
        "--cpus-per-worker",
        "2",
        "--scheduler",
        "fifo",
        "--name",
        "search",
        *[arg for item in QUICK for arg in ("--set", item)],
    ]
    trials = tmp_path / "runs" / "search" / "trials"
    ray_temp = tempfile.mkdtemp(prefix="dmt", dir="/tmp")
    # save the search's state often, so that the kill below finds the finished trial recorded
    env = {**os.environ, "RAY_TMPDIR": ray_temp, "TUNE_GLOBAL_CHECKPOINT_S": "0.5"}
    try:
        search = subprocess.Popen(
            [sys.executable, "-m", "distmeta", *args],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 180
        while not list(trials.glob("*/summary.json")) and search.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        finished = sorted(trials.glob("*/summary.json"))
        assert len(finished) == 1, "no trial finished before the search ended or timed out"
        time.sleep(3)  # the driver records the finished trial in its experiment state
        search.send_signal(signal.SIGKILL)
        search.wait()
        kill_processes_of(ray_temp)
        assert len(list(trials.glob("*/summary.json"))) < 2, "the search ended before the kill"

        resumed = subprocess.run(
            [sys.executable, "-m", "distmeta", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert "resuming the search" in resumed.stdout
    finally:
        kill_processes_of(ray_temp)
        shutil.rmtree(ray_temp, ignore_errors=True)
    first = finished[0].parent
    assert len((first / "starts.log").read_text().splitlines()) == 1  # never run again
    results = json.loads((tmp_path / "runs" / "search" / "results.json").read_text())
    assert sorted(trial["algorithm.inner_lr"] for trial in results["trials"]) == [0.01, 0.03]
