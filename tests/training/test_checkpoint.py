"""Checkpoints are written atomically and found again by step."""

import errno

import pytest
import torch

from distmeta.config import load_config
from distmeta.errors import StorageError
from distmeta.training import checkpoint as checkpoints


def test_a_write_that_fails_midway_raises_a_storage_error_and_leaves_the_previous_checkpoint_whole(
    tmp_path, monkeypatch
):
    config = load_config()
    checkpoints.save_checkpoint(tmp_path, 5, config, {"w": torch.zeros(2)}, {}, {})

    def disk_full(payload, file):
        file.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(
        StorageError,
        match=r"step_00000010.pt: the checkpoint of step 10 could not be written "
        r"\(\[Errno 28\] No space left on device\)",
    ):
        checkpoints.save_checkpoint(tmp_path, 10, config, {"w": torch.ones(2)}, {}, {})
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_00000005.pt"]  # no temporary file left
    assert checkpoints.load_checkpoint(tmp_path)["step"] == 5


def write_in(run_dir, folder, step):
    checkpoints.save_checkpoint(run_dir / folder, step, load_config(), {}, {}, {"step": step})


def test_the_newest_checkpoint_wins_whatever_the_folder_names(tmp_path):
    write_in(tmp_path, "checkpoint_2026-01-02_00-00-00.000000", 4)
    write_in(tmp_path, "checkpoint_2026-01-01_00-00-00.000000", 8)
    assert checkpoints.newest_readable_checkpoint(tmp_path)["step"] == 8


def test_a_truncated_newest_checkpoint_is_skipped_with_a_warning_naming_it_for_the_one_before(tmp_path):
    write_in(tmp_path, "checkpoint_a", 4)
    write_in(tmp_path, "checkpoint_b", 8)
    newest = checkpoints.checkpoint_files(tmp_path)[-1]
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.warns(checkpoints.CheckpointSkippedWarning, match=f"skipping {newest}: cannot be read"):
        assert checkpoints.newest_readable_checkpoint(tmp_path)["step"] == 4


def test_a_run_folder_without_checkpoints_has_nothing_to_resume(tmp_path):
    assert checkpoints.newest_readable_checkpoint(tmp_path / "never-ran") is None


def test_the_latest_checkpoint_is_the_highest_step(tmp_path):
    config = load_config()
    for step in (10, 200, 30):
        checkpoints.save_checkpoint(tmp_path, step, config, {"w": torch.full((2,), float(step))}, {}, {})
    (tmp_path / "checkpoints" / "notes.txt").write_text("not a checkpoint")
    latest = checkpoints.latest_checkpoint(tmp_path)
    assert latest.name == "step_00000200.pt"
    payload = checkpoints.load_checkpoint(tmp_path)
    assert payload["step"] == 200 and torch.equal(payload["meta_parameters"]["w"], torch.full((2,), 200.0))
    assert checkpoints.checkpoint_config(payload) == config


def test_meta_parameters_and_optimiser_state_are_saved_on_the_cpu_and_resume_exactly(tmp_path):
    from distmeta.experiment import build_experiment
    from distmeta.training.trainer import initial_state, meta_step

    config = load_config(None, ["train.meta_batch_size=4"])
    experiment = build_experiment(config)
    state = initial_state(experiment)
    meta_step(experiment, state)
    path = checkpoints.save_checkpoint(
        tmp_path, state.step, config, state.meta_params, state.optimizer.state_dict(), {}
    )
    saved_from = torch.load(path, weights_only=False)  # no map_location: each tensor where it was saved from
    tensors = [
        *saved_from["meta_parameters"].values(),
        *(value for per_param in saved_from["optimizer"]["state"].values() for value in per_param.values()),
    ]
    assert tensors and all(t.device.type == "cpu" for t in tensors)
    resumed = initial_state(experiment, checkpoints.load_checkpoint(path))
    for name, value in state.optimizer.state_dict()["state"].items():
        for key, tensor in value.items():
            assert torch.equal(resumed.optimizer.state_dict()["state"][name][key], tensor)


def test_tensors_nested_anywhere_in_optimiser_state_are_copied_to_the_cpu():
    nested = {"state": {0: {"exp_avg": torch.ones(2), "step": torch.tensor(3.0)}}, "groups": [(torch.zeros(1), 2)]}
    moved = checkpoints.on_cpu(nested)
    assert torch.equal(moved["state"][0]["exp_avg"], torch.ones(2)) and moved["groups"][0][1] == 2
    assert moved["state"][0]["exp_avg"] is not nested["state"][0]["exp_avg"]


def test_a_checkpoints_step_is_read_from_its_name_without_opening_it(tmp_path):
    config = load_config()
    checkpoints.save_checkpoint(tmp_path, 1200, config, {"w": torch.zeros(2)}, {}, {})
    (written,) = checkpoints.checkpoint_files(tmp_path)
    assert checkpoints.checkpoint_step(written) == 1200
    with pytest.raises(ValueError, match="notes.txt is not named as a checkpoint"):
        checkpoints.checkpoint_step(tmp_path / "notes.txt")
