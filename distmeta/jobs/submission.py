"""Send a `distmeta train` or `distmeta tune` command to a cluster as a Ray job, and follow it.

The job runs the very command a user would type on the head node, `python -m
distmeta train CONFIG ... --address auto`, in a runtime environment that
carries:
- the working directory (configs, search spaces, your own files), unpacked on
  the cluster as the job's current directory;
- this machine's distmeta package itself (`py_modules`), so the cluster runs
  exactly the code that validated the config here, whatever version its image has;
- pip requirements, for clusters whose image lacks them (installed by Ray on
  each node, which needs the network there).

The run's storage must be an absolute path on the cluster, or a bucket (`s3://`,
`gs://`, checked on the cluster with the nodes' credentials): the job's current
directory is a temporary copy that a later job (a resume) would not see.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from ray.job_submission import JobDetails, JobSubmissionClient

import distmeta
from distmeta.errors import ConfigError, DistmetaError
from distmeta.jobs.client import is_finished, job_details
from distmeta.storage import BUCKET_SCHEMES

DEFAULT_CLUSTER_STORAGE = "~/distmeta-runs"
"""Where submitted runs live on the cluster unless --storage says otherwise (the head node's home)."""

EXCLUDED_FROM_UPLOAD = [".git", ".venv", "venv", "runs", ".cache", "**/__pycache__", "*.pt", "*.egg-info"]
"""Never part of the working directory sent with a job: environments, runs, caches, checkpoints."""


@dataclass(frozen=True)
class Submission:
    command: str
    """train or tune."""
    arguments: list[str]
    """The command's arguments as the job runs them (paths relative to the working directory)."""
    working_dir: Path
    run_name: str
    storage: str
    requirements: list[str] = field(default_factory=list)

    @property
    def entrypoint(self) -> str:
        return shlex.join(["python", "-m", "distmeta", self.command, *self.arguments])

    @property
    def run_folder(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.run_name}"


def check_working_dir(working_dir: str | None) -> Path:
    folder = Path(working_dir or ".").expanduser().resolve()
    if not folder.is_dir():
        raise ConfigError("--working-dir", f"{folder} is not a folder")
    return folder


def path_in_working_dir(path: str, working_dir: Path, what: str) -> str:
    """`path` as the job sees it: relative to the working directory, which must contain it."""
    resolved = Path(path).expanduser().resolve()
    try:
        return resolved.relative_to(working_dir).as_posix()
    except ValueError:
        raise ConfigError(
            what,
            f"{path} is outside the working directory {working_dir}, which is all the "
            f"job receives; move it there or pass --working-dir",
        ) from None


def check_cluster_storage(storage: str | None) -> str:
    """The run storage on the cluster: an absolute path (or ~/...) every node mounts, or a
    bucket URI (whose credentials the cluster's nodes have: the job checks it before any worker starts)."""
    storage = storage or DEFAULT_CLUSTER_STORAGE
    if "://" in storage:
        if storage.split("://", 1)[0].lower() in BUCKET_SCHEMES:
            return storage
        raise ConfigError(
            "--storage",
            f"{storage}: give a path every node mounts or a bucket URI "
            f"({', '.join(f'{scheme}://' for scheme in BUCKET_SCHEMES)}...)",
        )
    if not storage.startswith(("/", "~")):
        raise ConfigError(
            "--storage",
            f"{storage}: give an absolute path on the cluster; a relative one would land "
            f"in the job's temporary copy of the working directory",
        )
    return storage


def read_requirements(packages: list[str], requirements_file: str | None) -> list[str]:
    requirements = list(packages)
    if requirements_file:
        path = Path(requirements_file)
        if not path.is_file():
            raise ConfigError("--requirements", f"{path}: no such file")
        lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
        requirements += [line for line in lines if line]
    return requirements


def runtime_env(submission: Submission) -> dict:
    env = {
        "working_dir": str(submission.working_dir),
        "py_modules": [str(Path(distmeta.__file__).parent)],
        "excludes": EXCLUDED_FROM_UPLOAD,
        # a Python that prints as it goes: `jobs logs --follow` shows steps as they happen
        "env_vars": {"PYTHONUNBUFFERED": "1"},
    }
    if submission.requirements:
        env["pip"] = submission.requirements
    return env


def submit(client: JobSubmissionClient, submission: Submission) -> str:
    try:
        return client.submit_job(
            entrypoint=submission.entrypoint,
            runtime_env=runtime_env(submission),
            metadata={"distmeta": submission.command, "run": submission.run_folder},
        )
    except (RuntimeError, ValueError) as error:
        raise DistmetaError(f"the job server at {client.get_address()} refused the job: {error}") from None


def follow_logs(client: JobSubmissionClient, job_id: str, write) -> None:
    """Write the job's log as it grows, from its start, until the job ends."""

    async def stream() -> None:
        async for chunk in client.tail_job_logs(job_id):
            write(chunk)

    # Ray logs "WebSocket closed" at the end, in the middle of the job's own lines
    logging.getLogger("ray.dashboard.modules.job.sdk").setLevel(logging.WARNING)
    asyncio.run(stream())


def wait_for_end(
    client: JobSubmissionClient, job_id: str, poll_s: float = 0.5, timeout_s: float | None = None
) -> JobDetails:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while not is_finished((job := job_details(client, job_id)).status):
        if deadline is not None and time.monotonic() > deadline:
            break
        time.sleep(poll_s)
    return job


def failure_message(job: JobDetails, logs: str) -> str:
    """Why a job failed, in its own words: distmeta's error line if it printed one, else Ray's message."""
    for line in reversed(logs.splitlines()):
        if line.startswith("distmeta ") and ": error: " in line:
            return line
    lines = (job.message or "").strip().splitlines()
    return lines[0] if lines else str(job.status)
