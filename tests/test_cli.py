"""The `distmeta` command line, run as a user runs it (a subprocess)."""

import json
import os
import subprocess
import sys

import pytest
import torch


def distmeta(*args, cwd, timeout=120):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "distmeta", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


TINY = [
    "--set",
    "train.steps=30",
    "--set",
    "train.log_every=10",
    "--set",
    "train.val_every=0",
    "--set",
    "eval.tasks=20",
]


def test_train_in_process_says_how_inner_loops_run(tmp_path):
    trained = distmeta("train", *TINY, "--in-process", "--no-eval", "--run-dir", "run", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "inner loops: vmap" in trained.stdout and "step 30/30" in trained.stdout


def test_a_bad_config_value_fails_at_once_naming_the_field(tmp_path):
    result = distmeta("train", "--set", "algorithm.inner_lr=-1", cwd=tmp_path)
    assert result.returncode == 2
    assert "algorithm.inner_lr: must be positive, got -1.0" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_eval_of_a_missing_checkpoint_names_it(tmp_path):
    result = distmeta("eval", "nowhere", cwd=tmp_path)
    assert result.returncode == 2 and "nowhere: does not exist" in result.stderr


@pytest.mark.slow
def test_train_on_ray_with_relative_data_paths_then_eval_the_run(tmp_path):
    """One Ray run serves both: `distmeta train` on a local Ray cluster reads the data and cache
    paths of its config relative to where the command runs (on the workers too), then
    `distmeta eval` meta-tests the run with an override and writes its JSON."""
    from tests.tasks.test_omniglot import make_tree

    make_tree(tmp_path / "omniglot", alphabets=["Alpha", "Beta", "Gamma", "Delta", "Epsilon"])
    relative = [
        "--set",
        "task.name=omniglot",
        "--set",
        "task.omniglot.roots=[omniglot]",
        "--set",
        "task.omniglot.cache_dir=cache",
        "--set",
        "task.ways=2",
        "--set",
        "task.shots=1",
        "--set",
        "task.query_shots=1",
        "--set",
        "train.meta_batch_size=2",
        "--set",
        "model.channels=4",
    ]
    trained = distmeta(
        "train",
        *relative,
        "--set",
        "train.steps=2",
        "--set",
        "train.log_every=1",
        "--set",
        "train.val_every=0",
        "--set",
        "eval.tasks=4",
        "--run-dir",
        "run",
        cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr
    assert "run directory" in trained.stdout and "1 worker(s) x (1 CPU, 0 GPU)" in trained.stdout
    assert "step 2/2" in trained.stdout and "cpu (loop)" in trained.stdout and "meta-test" in trained.stdout
    evaluated = distmeta(
        "eval",
        "run",
        "--tasks",
        "6",
        "--inner-steps",
        "1",
        "--set",
        "task.query_shots=2",
        "--json",
        "eval.json",
        cwd=tmp_path,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert "test accuracy" in evaluated.stdout and "6 tasks, 1 inner steps" in evaluated.stdout
    assert json.loads((tmp_path / "eval.json").read_text())["tasks"] == 6


def test_eval_runs_a_checkpoint_trained_on_cuda_on_this_cpu_machine(tmp_path):
    from distmeta.config import load_config
    from distmeta.experiment import build_experiment
    from distmeta.training.checkpoint import save_checkpoint

    config = load_config(None, ["train.device=cuda"])  # as a GPU run's checkpoint says
    params = build_experiment(config, torch.device("cpu"), check_data=False).initial_meta_parameters()
    save_checkpoint(tmp_path / "gpu-run", 100, config, params, {}, {})
    asked = distmeta("eval", "gpu-run", "--device", "cpu", "--tasks", "8", cwd=tmp_path)
    assert asked.returncode == 0, asked.stderr
    assert "device cpu (--device cpu)" in asked.stdout and "test mse" in asked.stdout
    by_default = distmeta("eval", "gpu-run", "--tasks", "8", cwd=tmp_path)
    assert by_default.returncode == 0, by_default.stderr
    assert "device cpu (the config says cuda, but torch sees no GPU here)" in by_default.stdout
    refused = distmeta("eval", "gpu-run", "--device", "cuda", cwd=tmp_path)
    assert refused.returncode == 2 and "--device: cuda was asked for, but torch sees no GPU here" in refused.stderr
