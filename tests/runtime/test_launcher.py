"""The driver's resume announcement: the checkpoint it names, and one warning for a damaged one."""

import warnings

import torch

from distmeta.config import load_config
from distmeta.runtime.launcher import announced_resume
from distmeta.training import checkpoint as checkpoints


def saved(run_dir, step):
    checkpoints.save_checkpoint(run_dir, step, load_config(), {"w": torch.zeros(1)}, {}, {"step": step})


def test_a_damaged_newest_checkpoint_read_once_before_the_claim_is_not_read_or_warned_about_again(tmp_path):
    saved(tmp_path, 2)
    saved(tmp_path, 4)
    newest = checkpoints.latest_checkpoint(tmp_path)
    newest.write_bytes(newest.read_bytes()[:100])
    with warnings.catch_warnings(record=True) as before:
        warnings.simplefilter("always")
        previous = checkpoints.newest_readable_checkpoint(tmp_path)
    assert [w.category for w in before] == [checkpoints.CheckpointSkippedWarning]

    lines = []
    with warnings.catch_warnings(record=True) as announcing:
        warnings.simplefilter("always")
        step = announced_resume(tmp_path, previous, newest, load_config(), lines.append)
    assert step == 2 and announcing == []
    assert "from the checkpoint of step 2 of" in lines[0]


def test_a_checkpoint_written_after_the_first_read_is_the_one_resumed_from(tmp_path):
    saved(tmp_path, 2)
    seen = checkpoints.latest_checkpoint(tmp_path)
    previous = checkpoints.newest_readable_checkpoint(tmp_path)
    saved(tmp_path, 6)  # by a killed driver's worker, still alive until the claim
    assert announced_resume(tmp_path, previous, seen, load_config(), lambda *_: None) == 6


def test_a_new_run_resumes_from_nothing_and_says_nothing(tmp_path):
    lines = []
    assert announced_resume(tmp_path / "new", None, None, load_config(), lines.append) == 0
    assert lines == []
