"""Finding the processes of one Ray cluster on this machine, by what surely identifies them.

Ray's agents rename themselves (`ray::DashboardAgent`, `ray::RuntimeEnvAgent`) and
overwrite their command line and environment in doing so, so an environment
marker misses them, and they can outlive their raylet. What they cannot shed:
- their session: each node of a local cluster is started in a new session, and
  Ray starts its daemons, agents and workers in the session of whoever started it;
- the files they hold open under the cluster's Ray temp folder (their logs), or
  that folder named on their command line;
- their parents: a job's entrypoint gets a session of its own, but it is a child
  of a process found by the rules above.

Linux only (it reads /proc), as is Ray's local cluster.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

RAY_SIGNATURES = ("ray::", "ray-dashboard-", "/ray/core/src/ray/", "/site-packages/ray/", "raylet", "gcs_server")
"""Substrings of a command line that mark a process as Ray's (daemons, agents, workers, dashboard)."""


@dataclass(frozen=True)
class Process:
    pid: int
    parent: int
    session: int
    started: int
    """Start time in clock ticks since boot: with the pid, it names a process even after pid reuse."""
    command: str


def read_process(pid: int) -> Process | None:
    """The process `pid`, or None when it is gone, unreadable or a zombie (dead, holding nothing:
    in a container whose first process reaps no orphans, zombies stay listed for ever)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    # The name in parentheses may itself hold spaces or parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return Process(pid, parent=int(fields[1]), session=int(fields[3]), started=int(fields[19]), command=command)


def all_processes() -> list[Process]:
    own = os.getpid()
    found = (read_process(int(pid)) for pid in os.listdir("/proc") if pid.isdigit() and int(pid) != own)
    return [process for process in found if process is not None]


def is_ray(process: Process) -> bool:
    """Whether `process` looks like Ray's (a daemon, agent, worker or the dashboard) by its command line."""
    return any(mark in process.command for mark in RAY_SIGNATURES)


def ray_processes() -> list[Process]:
    """Every process on this machine that looks like Ray's, whoever started it."""
    return [process for process in all_processes() if is_ray(process)]


def paths_in_use(process: Process) -> list[str]:
    """The paths `process` names on its command line, works in or holds open."""
    paths = [word for word in process.command.replace("=", " ").split() if word.startswith("/")]
    links = [f"/proc/{process.pid}/cwd"]
    try:
        links += [f"/proc/{process.pid}/fd/{fd}" for fd in os.listdir(f"/proc/{process.pid}/fd")]
    except OSError:
        return paths
    for link in links:
        try:
            paths.append(os.readlink(link))
        except OSError:
            continue
    return paths


def uses_folder(process: Process, folder: str) -> bool:
    """Whether `process` names `folder` on its command line, works in it or holds a file open under it."""
    folder = str(folder).rstrip("/")
    return folder in process.command or any(
        path == folder or path.startswith(folder + "/") for path in paths_in_use(process)
    )


def has_environment(process: Process, entry: str) -> bool:
    """Whether `entry` ("NAME=value") is in the environment `process` started with."""
    try:
        environment = Path(f"/proc/{process.pid}/environ").read_bytes()
    except OSError:
        return False
    return f"\0{entry}\0".encode() in b"\0" + environment + b"\0"


def processes_of(
    sessions: Iterable[int] = (), folders: Iterable[str] = (), environment: str | None = None
) -> list[int]:
    """Processes in one of `sessions`, or using one of `folders`, or started with `environment`
    ("NAME=value"), and every descendant of those."""
    sessions, folders = set(sessions), [str(folder) for folder in folders]
    everyone = all_processes()
    found = {
        process.pid
        for process in everyone
        if process.session in sessions
        or any(uses_folder(process, folder) for folder in folders)
        or (environment is not None and has_environment(process, environment))
    }
    return sorted(found | descendants(found, everyone))


def descendants(pids: set[int], everyone: list[Process]) -> set[int]:
    children: dict[int, list[int]] = {}
    for process in everyone:
        children.setdefault(process.parent, []).append(process.pid)
    found, frontier = set(), list(pids)
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in found and child not in pids:
                found.add(child)
                frontier.append(child)
    return found


def stop_processes(find: Callable[[], list[int]], grace_s: float = 10.0, kill_s: float = 10.0) -> list[int]:
    """SIGTERM to every process `find()` returns, then SIGKILL to any left after `grace_s`.

    `find` is asked again while waiting, so that a process started meanwhile (a raylet
    restarting a worker) is stopped too. Returns the processes that were found; raises
    RuntimeError naming any that are still alive at the end.
    """
    stopped = set(find())
    _signal(stopped, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while (left := find()) and time.monotonic() < deadline:
        _signal(set(left) - stopped, signal.SIGTERM)  # once each: a second one can cut a clean exit short
        stopped.update(left)
        time.sleep(0.2)
    deadline = time.monotonic() + kill_s
    while (left := find()) and time.monotonic() < deadline:
        stopped.update(left)
        _signal(left, signal.SIGKILL)
        time.sleep(0.2)
    if left := find():
        raise RuntimeError(f"processes still alive after SIGKILL: {describe(left)}")
    return sorted(stopped)


def describe(pids: Iterable[int]) -> str:
    processes = [read_process(pid) for pid in pids]
    return ", ".join(f"{process.pid} ({process.command[:60]})" for process in processes if process is not None)


def _signal(pids: Iterable[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass
