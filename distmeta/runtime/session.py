"""Which driver owns a run: the one that started it last.

A driver killed mid-run leaves its workers alive for a moment (Ray reaps a dead job's
actors asynchronously), and a user may start a second driver on a run that is still
going. Two writers to one run lose each other's lines: in a bucket, appending to
`metrics.jsonl` reads the object and uploads it again. So every driver claims the run
(`session.json`) just before its workers start, and rank 0 checks the claim before each
write: a session that was taken over stops with `RunTakenOverError`, its checkpoints
intact, instead of writing over the new one.

The check and the write are two steps, not one: an old writer could still slip one write
in, but only by stalling between them for as long as the new session takes to start its
workers and write its first line (seconds).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import uuid4

from distmeta.errors import RunTakenOverError
from distmeta.storage import Location

SESSION_FILE = "session.json"


def claim_run(run_dir: Location) -> str:
    """Make this driver the run's owner; returns the id its workers check against."""
    session_id = uuid4().hex
    session = {
        "id": session_id,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    run_dir.mkdir()
    (run_dir / SESSION_FILE).write_text(json.dumps(session, indent=2))
    return session_id


def run_owner(run_dir: Location) -> dict | None:
    """The session that claimed the run last (None before any did)."""
    path = run_dir / SESSION_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def owner_check(run_dir: Location, session_id: str | None) -> Callable[[], None]:
    """A function that raises `RunTakenOverError` once another session has claimed the run.

    Without a session id (a run in one process, which claims nothing) it checks nothing."""

    def check() -> None:
        if session_id is None:
            return
        owner = run_owner(run_dir)
        if owner is None or owner["id"] == session_id:
            return
        raise RunTakenOverError(run_dir, f"{owner['host']} (pid {owner['pid']}, started {owner['started']})")

    return check
