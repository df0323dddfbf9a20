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
