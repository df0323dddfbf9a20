"""Talking to a cluster's job server (Ray's Job Submission API), with errors a person can act on.

The job server is the head node's dashboard, `http://HEAD:8265` by default.
Ray's own errors ("Failed to connect to Ray at address", "status code 404", a missing
or wrong token) are turned into one line naming the address or the job, with what to check.
"""

from __future__ import annotations

import os
from datetime import datetime

from ray.exceptions import AuthenticationError
from ray.job_submission import JobDetails, JobStatus, JobSubmissionClient

from distmeta.errors import DistmetaError
from distmeta.jobs import DEFAULT_ADDRESS
from distmeta.jobs.auth import authentication_failure, present_token_if_available


def default_address() -> str:
    """The job server: $RAY_API_SERVER_ADDRESS, else an http $RAY_ADDRESS, else the local default."""
    for variable in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"):
        value = os.environ.get(variable, "")
        if value.startswith(("http://", "https://")):
            return value
    return DEFAULT_ADDRESS


class JobServerUnreachable(DistmetaError):
    def __init__(self, address: str, reason: str):
        super().__init__(
            f"--address {address}: no Ray job server answered ({reason}). Is the cluster's dashboard running "
            f"and reachable from here? It listens on the head node, port 8265 by default; for a cloud cluster "
            f"forward it (`ray dashboard CLUSTER.yaml`, or `kubectl port-forward svc/HEAD-svc 8265`) and use "
            f"http://127.0.0.1:8265"
        )


def connect(address: str, token_file: str | None = None) -> JobSubmissionClient:
    """A client of the job server at `address`, sending the Ray token of `token_file`, else
    the one this machine has (see `jobs.auth`), if any."""
    if not address.startswith(("http://", "https://")):
        raise DistmetaError(f"--address {address}: give the job server's URL, e.g. http://HEAD:8265 (the dashboard)")
    token_source = present_token_if_available(token_file)
    try:
        return JobSubmissionClient(address)
    except ConnectionError as error:
        raise JobServerUnreachable(address, str(error).rstrip(".")) from None
    except AuthenticationError as error:
        raise DistmetaError(authentication_failure(address, error, token_source)) from None


def job_details(client: JobSubmissionClient, job_id: str) -> JobDetails:
    try:
        return client.get_job_info(job_id)
    except RuntimeError as error:
        if "404" in str(error) or "does not exist" in str(error):
            raise DistmetaError(
                f"job {job_id}: no such job on {client.get_address()} (`distmeta jobs list` shows the jobs there)"
            ) from None
        raise


def job_logs(client: JobSubmissionClient, job_id: str) -> str:
    job_details(client, job_id)  # an unknown id gets the clear message
    return client.get_job_logs(job_id)


def is_finished(status: JobStatus) -> bool:
    return JobStatus(status).is_terminal()


def timestamp(milliseconds: int | None) -> str:
    if not milliseconds:
        return "-"
    return datetime.fromtimestamp(milliseconds / 1000).strftime("%Y-%m-%d %H:%M:%S")


def duration(job: JobDetails) -> str:
    if not job.start_time:
        return "-"
    end = job.end_time or datetime.now().timestamp() * 1000
    seconds = int((end - job.start_time) / 1000)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
