"""Finding and stopping the processes of a Ray cluster whose driver a test killed.

Such a cluster has no handle left to shut it down with; its processes are known by
the temp folder the test gave it (RAY_TMPDIR). Never `ray stop`: that would stop
every Ray process on the machine.
"""

import os
import signal
import time
from pathlib import Path


def processes_of(folder: str) -> list[int]:
    """Processes of the Ray cluster whose temp folder is `folder`: they name it in their
    command line or inherited it in their environment (RAY_TMPDIR)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            text = (Path(f"/proc/{pid}/cmdline").read_bytes() + Path(f"/proc/{pid}/environ").read_bytes())
        except OSError:
            continue
        if folder.encode() in text and int(pid) != os.getpid():
            found.append(int(pid))
    return found


def kill_processes_of(folder: str) -> None:
    """Stop whatever the killed driver's Ray cluster left behind, and wait until it is gone."""
    deadline = time.monotonic() + 30
    while (pids := processes_of(folder)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    assert not processes_of(folder), "processes of the killed run are still alive"
