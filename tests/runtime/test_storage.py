"""Finding the checkpoint to resume from in a run folder (Ray Train's layout)."""

from distmeta.config import load_config
from distmeta.runtime.storage import newest_readable_checkpoint
from distmeta.training.checkpoint import checkpoint_files, save_checkpoint


def write(run_dir, folder, step):
    config = load_config(None, [])
    save_checkpoint(run_dir / folder, step, config, {}, {}, {"step": step})


def test_the_newest_checkpoint_wins_whatever_the_folder_names(tmp_path):
    write(tmp_path, "checkpoint_2026-01-02_00-00-00.000000", 4)
    write(tmp_path, "checkpoint_2026-01-01_00-00-00.000000", 8)
    assert newest_readable_checkpoint(tmp_path)["step"] == 8


def test_a_checkpoint_cut_short_by_a_crash_is_passed_over_for_the_one_before(tmp_path):
    write(tmp_path, "checkpoint_a", 4)
    write(tmp_path, "checkpoint_b", 8)
    newest = checkpoint_files(tmp_path)[-1]
    newest.write_bytes(newest.read_bytes()[:100])
    assert newest_readable_checkpoint(tmp_path)["step"] == 4


def test_a_run_folder_without_checkpoints_has_nothing_to_resume(tmp_path):
    assert newest_readable_checkpoint(tmp_path / "never-ran") is None
