"""Ray processes a test leaves behind, found by what surely identifies them.

Names alone would not do (another suite may run Ray on this machine), nor the
environment (Ray's agents overwrite theirs when they rename themselves): a Ray
process is this test run's when it is in this pytest process's session (every
`ray.init` and `distmeta` subprocess a test starts), or holds open or names a
folder under one of this run's temp roots (the nodes of a local cluster and a
job's driver, which run in sessions of their own). Never `ray stop`: that would
stop every Ray process on the machine.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

from distmeta.jobs import processes

SESSION_FOLDER = re.compile(r"^(.*/session_[^/]+)")


def kill_processes_of(folder: str) -> None:
    """Stop whatever a killed driver's Ray cluster (temp folder `folder`) left behind."""
    processes.stop_processes(lambda: processes.processes_of(folders=[folder]), grace_s=0, kill_s=30)


def ray_processes_of_this_run(roots: list[str]) -> list[processes.Process]:
    session = os.getsid(0)
    return [
        process
        for process in processes.ray_processes()
        if process.session == session or any(processes.uses_folder(process, root) for root in roots)
    ]


def session_folders(process: processes.Process) -> set[str]:
    """The Ray session folders (`.../session_<date>_<pid>`) `process` uses: which cluster it serves."""
    return {match.group(1) for path in processes.paths_in_use(process) if (match := SESSION_FOLDER.match(path))}


@contextmanager
def leaves_no_ray_process(roots: list[str], what: str, wait_s: float = 20.0) -> Iterator[None]:
    """Inside: anything. After: every Ray process of this run started inside has ended (within
    `wait_s`: Ray's shutdown takes a moment), except the new workers of a cluster that was running
    before (a module's cluster keeps idle workers for the next test); any left are killed and named."""
    before = ray_processes_of_this_run(roots)
    known = {(process.pid, process.started) for process in before}
    clusters_before = set().union(*(session_folders(process) for process in before))

    def left_behind() -> list[processes.Process]:
        return [
            process
            for process in ray_processes_of_this_run(roots)
            if (process.pid, process.started) not in known and not session_folders(process) & clusters_before
        ]

    yield
    deadline = time.monotonic() + wait_s
    while (left := left_behind()) and time.monotonic() < deadline:
        time.sleep(0.5)
    if left:
        named = processes.describe(process.pid for process in left)
        processes.stop_processes(lambda: [process.pid for process in left_behind()], grace_s=0)
        raise AssertionError(f"{what} left {len(left)} Ray process(es) running: {named}")
