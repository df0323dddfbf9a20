"""What a submission sends: the entrypoint, the runtime environment, and what is refused before sending."""

import shlex
from pathlib import Path

import pytest

import distmeta
from distmeta.cli import build_parser
from distmeta.errors import ConfigError
from distmeta.jobs.submission import (
    DEFAULT_CLUSTER_STORAGE,
    Submission,
    check_cluster_storage,
    path_in_working_dir,
    read_requirements,
    runtime_env,
)


def test_the_entrypoint_is_a_distmeta_command_its_own_parser_takes(tmp_path):
    job = Submission(
        "train",
        [
            "configs/a b.yaml",
            "--set",
            "train.steps=5",
            "--workers",
            "2",
            "--address",
            "auto",
            "--storage",
            "/shared/runs",
            "--name",
            "x",
        ],
        tmp_path,
        "x",
        "/shared/runs",
    )
    words = shlex.split(job.entrypoint)
    assert words[:3] == ["python", "-m", "distmeta"]
    args = build_parser().parse_args(words[3:])
    assert args.command == "train" and args.config == "configs/a b.yaml" and args.workers == 2
    assert args.overrides == ["train.steps=5"] and args.address == "auto" and job.run_folder == "/shared/runs/x"


def test_the_runtime_environment_carries_the_working_dir_and_this_distmeta(tmp_path):
    env = runtime_env(Submission("tune", [], tmp_path, "x", "/runs", ["numpy==2.0"]))
    assert env["working_dir"] == str(tmp_path)
    assert env["py_modules"] == [str(Path(distmeta.__file__).parent)]
    assert ".venv" in env["excludes"] and "runs" in env["excludes"]
    assert env["pip"] == ["numpy==2.0"]
    assert "pip" not in runtime_env(Submission("tune", [], tmp_path, "x", "/runs"))


def test_a_config_outside_the_working_dir_is_refused_naming_both(tmp_path):
    (tmp_path / "work").mkdir()
    assert path_in_working_dir(str(tmp_path / "work" / "c.yaml"), tmp_path / "work", "CONFIG") == "c.yaml"
    with pytest.raises(ConfigError, match="outside the working directory"):
        path_in_working_dir(str(tmp_path / "c.yaml"), tmp_path / "work", "CONFIG")


def test_cluster_storage_must_be_absolute_and_defaults_to_the_head_nodes_home():
    assert check_cluster_storage(None) == DEFAULT_CLUSTER_STORAGE
    assert check_cluster_storage("/shared/runs") == "/shared/runs"
    with pytest.raises(ConfigError, match="--storage: runs: give an absolute path"):
        check_cluster_storage("runs")
    assert check_cluster_storage("s3://bucket/runs") == "s3://bucket/runs"  # checked on the cluster
    with pytest.raises(ConfigError, match="--storage: ftp://host/runs: give a path every node mounts or a bucket"):
        check_cluster_storage("ftp://host/runs")


def test_requirements_come_from_flags_and_a_file_without_comments(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# pinned\ntorch==2.13.0  # cpu\n\npyarrow>=15\n")
    assert read_requirements(["pillow"], str(requirements)) == ["pillow", "torch==2.13.0", "pyarrow>=15"]
    with pytest.raises(ConfigError, match="--requirements"):
        read_requirements([], str(tmp_path / "missing.txt"))
