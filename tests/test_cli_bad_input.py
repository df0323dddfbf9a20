"""Bad input on the command line: refused before any work, naming the flag or field (in this process)."""

import json

import pytest

from distmeta.cli import main

TINY = ["--set", "train.steps=2", "--set", "train.log_every=1", "--set", "train.val_every=0", "--set", "eval.tasks=4"]
SMALL_MODEL = ["--set", "model.hidden_sizes=[8]", "--set", "train.meta_batch_size=2"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A 2-step sinusoid run to evaluate."""
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--in-process", "--no-eval", "--run-dir", str(run), *TINY, *SMALL_MODEL]) == 0
    return run


def refused(argv: list[str], capsys) -> str:
    """The error line of a command that must be refused: argparse's (exit 2) or distmeta's (returns 2)."""
    try:
        code = main(argv)
    except SystemExit as exit:
        code = exit.code
    assert code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--workers", "2"], "--workers"),
        (["--address", "auto"], "--address"),
        (["--gpus-per-worker", "1"], "--gpus-per-worker"),
        (["--cpus-per-worker", "2"], "--cpus-per-worker"),
    ],
)
def test_training_in_process_refuses_ray_worker_flags_rather_than_ignore_them(flags, named, tmp_path, capsys):
    error = refused(["train", "--in-process", "--run-dir", str(tmp_path / "run"), *TINY, *flags], capsys)
    assert f"{named}: a Ray worker setting, which --in-process" in error
    assert not (tmp_path / "run").exists()


def test_training_in_process_puts_the_run_at_storage_and_name_and_the_same_command_resumes_it(tmp_path, capsys):
    command = ["train", "--in-process", "--no-eval", "--storage", str(tmp_path), "--name", "mine", *SMALL_MODEL]
    assert main([*command, *TINY]) == 0
    assert (tmp_path / "mine" / "summary.json").exists()
    assert main([*command, *TINY, "--set", "train.steps=3"]) == 0
    assert "resuming from" in capsys.readouterr().out
    assert json.loads((tmp_path / "mine" / "summary.json").read_text())["steps"] == 3


def test_a_run_dir_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "notes.yaml").write_text("")
    error = refused(["train", "--in-process", "--run-dir", str(tmp_path / "notes.yaml"), *TINY], capsys)
    assert "--run-dir: " in error and "is a file, not a folder" in error


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--tasks", "0"], "argument --tasks: must be at least 1, got 0"),
        (["--tasks", "-3"], "argument --tasks: must be at least 1, got -3"),
        (["--inner-steps", "-1"], "argument --inner-steps: must be at least 0, got -1"),
        (["--set", "model.hidden_sizes=[4]"], "model.hidden_sizes: fixed by the checkpoint ([8])"),
        (["--set", "algorithm.name=metasgd"], "algorithm.name: fixed by the checkpoint (maml)"),
        (["--set", "task.name=omniglot"], "task.name: fixed by the checkpoint (sinusoid)"),
    ],
)
def test_eval_refuses_bad_counts_and_fields_the_checkpoint_holds(trained_run, flags, message, capsys):
    assert message in refused(["eval", str(trained_run), *flags], capsys)


def test_eval_refuses_a_json_path_that_is_a_folder_before_evaluating_and_makes_a_missing_parent(
    trained_run, tmp_path, capsys
):
    error = refused(["eval", str(trained_run), "--tasks", "2", "--json", str(tmp_path)], capsys)
    assert f"--json: {tmp_path} is a folder" in error
    assert "test mse" not in capsys.readouterr().out  # nothing was evaluated
    written = tmp_path / "new" / "folder" / "result.json"
    assert main(["eval", str(trained_run), "--tasks", "2", "--set", "task.shots=5", "--json", str(written)]) == 0
    assert json.loads(written.read_text())["tasks"] == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["kb", "query", "RUN", "--k", "0"], "argument --k: must be at least 1, got 0"),
        (["kb", "query", "RUN", "--task-index", "-1"], "argument --task-index: must be at least 0, got -1"),
        (["kb", "query", "RUN", "--inner-steps", "-3"], "argument --inner-steps: must be at least 0, got -3"),
        (["kb", "build", "RUN", "--tasks", "4", "--size", "0"], "argument --size: must be at least 1, got 0"),
        (["kb", "build", "RUN", "--tasks", "4", "--size", "x"], "argument --size: expected a whole number, got 'x'"),
    ],
)
def test_knowledge_base_flags_are_checked_before_the_run_is_read(argv, message, capsys):
    assert message in refused(argv, capsys)
