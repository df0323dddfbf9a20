"""Ray processes a test leaves behind, found by what surely identifies them.

Names alone would not do (another suite may run Ray on this machine), nor the
environment (Ray's agents overwrite theirs when they rename themselves): a Ray
process is this test run's when it holds open or names a folder under one of this
run's temp roots (the nodes of a local cluster and a job's driver, which run in
sessions of their own), or when it is in this pytest process's session (every
`ray.init` and `distmeta` subprocess a test starts) and was started by this run:
it descends from the run's pytest process, or was orphaned on the way (a test
killed its driver). A Ray cluster that another command of the same terminal
session started (`make run &` then `make test`) has that command's driver among
its ancestors, and is left alone. Never `ray stop`: that would stop every Ray
process on the machine.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

from distmeta.jobs import processes

SESSION_FOLDER = re.compile(r"^(.*/session_[^/]+)")
TEST_RUN_ROOT = "DISTMETA_TEST_RUN_ROOT"
"""Names, in the environment, the pid of the pytest process that started this run: the
controller, whose pytest-xdist workers inherit it (set by tests/conftest.py)."""


def kill_processes_of(folder: str) -> None:
    """Stop whatever a killed driver's Ray cluster (temp folder `folder`) left behind."""
    processes.stop_processes(lambda: processes.processes_of(folders=[folder]), grace_s=0, kill_s=30)


def ray_processes_of_this_run(roots: list[str]) -> list[processes.Process]:
    session, root = os.getsid(0), int(os.environ.get(TEST_RUN_ROOT, os.getpid()))
    everyone = {process.pid: process for process in processes.all_processes()}
    return [
        process
        for process in everyone.values()
        if processes.is_ray(process)
        and (
            (process.session == session and started_by_this_run(process, everyone, root))
            or any(processes.uses_folder(process, folder) for folder in roots)
        )
    ]


def started_by_this_run(process: processes.Process, everyone: dict[int, processes.Process], root: int) -> bool:
    """Whether `process` descends from the run's pytest process `root`, or was orphaned on the way:
    its ancestors in its session are Ray's alone. A process that is neither has a driver that no
    test started (another command of the same session) among its ancestors."""
    passed_a_driver, pid = False, process.parent
    while pid != root and pid in everyone and everyone[pid].session == process.session:
        passed_a_driver = passed_a_driver or not processes.is_ray(everyone[pid])
        pid = everyone[pid].parent
    return pid == root or not passed_a_driver


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
