"""Which driver owns a run: a later claim takes it over, and the earlier session's
rank 0 stops before writing another line (see tests/runtime/test_failures.py for a run
taken over on Ray, and tests/test_storage_on_ray.py for a killed driver in a bucket)."""

import json
import os
import socket

import pytest

from distmeta.errors import RunTakenOverError
from distmeta.runtime.session import SESSION_FILE, claim_run, owner_check, run_owner
from distmeta.storage import location
from distmeta.training.progress import ProgressLog


def test_a_claim_records_the_session_its_host_and_its_process(tmp_path):
    run = location(tmp_path / "run")
    session = claim_run(run)
    owner = json.loads((tmp_path / "run" / SESSION_FILE).read_text())
    assert owner["id"] == session and owner["host"] == socket.gethostname() and owner["pid"] == os.getpid()
    assert run_owner(run) == owner


def test_the_owner_passes_its_check_until_another_session_claims_the_run(tmp_path):
    run = location(tmp_path / "run")
    first = claim_run(run)
    still_owner = owner_check(run, first)
    still_owner()
    second = claim_run(run)
    assert second != first
    with pytest.raises(RunTakenOverError, match=f"pid {os.getpid()}, started ") as raised:
        still_owner()
    assert raised.value.path == str(tmp_path / "run")
    owner_check(run, second)()


def test_a_run_without_a_session_checks_nothing(tmp_path):
    run = location(tmp_path / "run")
    claim_run(run)
    owner_check(run, None)()


def test_a_progress_log_of_a_session_that_was_taken_over_writes_nothing_more(tmp_path):
    run = location(tmp_path / "run")
    progress = ProgressLog(run, 10, "mse", print_fn=lambda *_: None, before_write=owner_check(run, claim_run(run)))
    progress.record({"step": 1, "meta_loss": 1.0})
    claim_run(run)
    with pytest.raises(RunTakenOverError):
        progress.record({"step": 2, "meta_loss": 0.5})
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1]
