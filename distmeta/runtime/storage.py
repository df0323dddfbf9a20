"""The layout of a distributed run in its storage: `<storage>/<name>/`.

Ray Train owns the `checkpoint_*` folders (each holds one of our `step_*.pt`
files); rank 0 adds `metrics.jsonl`, `tensorboard/`, `workers.json`; the driver
adds `summary.json`. A worker that stops on a user error leaves `distmeta_error.json`;
rank 0 writes the final meta-test, taken on the workers, to `meta_test.json`.
"""

from __future__ import annotations

from pathlib import Path

from distmeta.errors import CheckpointError
from distmeta.training.checkpoint import checkpoint_files, load_checkpoint

ERROR_FILE = "distmeta_error.json"
WORKERS_FILE = "workers.json"
META_TEST_FILE = "meta_test.json"


def newest_readable_checkpoint(run_dir: Path) -> dict | None:
    """The payload of the highest-step checkpoint of `run_dir` that loads cleanly, if any."""
    for path in reversed(checkpoint_files(run_dir)):
        try:
            return load_checkpoint(path)
        except CheckpointError:  # a copy cut short by a crash: the one before it is whole
            continue
    return None
