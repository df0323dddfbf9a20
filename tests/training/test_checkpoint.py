"""Checkpoints are written atomically and found again by step."""

import pytest
import torch

from distmeta.config import load_config
from distmeta.training import checkpoint as checkpoints


def test_a_crash_while_writing_leaves_no_checkpoint_behind(tmp_path, monkeypatch):
    config = load_config()

    def crash(payload, file):
        file.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoints.save_checkpoint(tmp_path, 5, config, {"w": torch.zeros(2)}, {}, {})
    assert list((tmp_path / "checkpoints").iterdir()) == []
    assert checkpoints.latest_checkpoint(tmp_path) is None


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
    path = checkpoints.save_checkpoint(tmp_path, state.step, config, state.meta_params,
                                       state.optimizer.state_dict(), {})
    saved_from = torch.load(path, weights_only=False)  # no map_location: each tensor where it was saved from
    tensors = [*saved_from["meta_parameters"].values(),
               *(value for per_param in saved_from["optimizer"]["state"].values() for value in per_param.values())]
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
