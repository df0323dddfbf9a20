"""`distmeta train` started as a user starts it, in a process of its own (to be killed and rerun)."""

import os
import subprocess
import sys


def started_train(storage, overrides: list[str], env: dict, *extra: str) -> subprocess.Popen:
    """`distmeta train --workers 1 --storage STORAGE --name run --no-eval` with `overrides` as
    --set options and `extra` arguments; `env` is added to this process's environment."""
    args = [
        sys.executable,
        "-m",
        "distmeta",
        "train",
        "--workers",
        "1",
        "--storage",
        str(storage),
        "--name",
        "run",
        "--no-eval",
        *[arg for item in overrides for arg in ("--set", item)],
        *extra,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
