"""A real S3-compatible server for the tests: moto's standalone server on loopback.

It runs as a subprocess on a free port and is stopped by its pid. It checks IAM
credentials and policies (after the few unauthenticated set-up calls,
`INITIAL_NO_AUTH_ACTION_COUNT`), so that a bucket whose credentials may only read
really refuses writes. distmeta reaches it as a user would reach MinIO or any other
S3-compatible server: the endpoint in the URI's query, the credentials in the
environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import boto3
import pytest

BUCKET = "distmeta-runs"
READ_ONLY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["s3:Get*", "s3:List*", "s3:Head*"], "Resource": "*"}],
}
READ_WRITE = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
SET_UP_CALLS = 7
"""The calls `_set_up` makes before the server starts checking credentials: one bucket, two users
(each: the user, its policy, its key)."""


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    """host:port on loopback."""
    writer: dict[str, str]
    """Environment variables with credentials that may read and write every bucket."""
    reader: dict[str, str]
    """Environment variables with credentials that may only read."""

    def uri(self, key: str, bucket: str = BUCKET) -> str:
        """`s3://bucket/key` on this server, its endpoint as a query (as pyarrow takes it)."""
        return f"s3://{bucket}/{key}?endpoint_override={self.endpoint}&scheme=http"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, log, timeout_s: float = 30) -> None:
    """Until the server accepts connections; a plain TCP connect, which makes no S3 call (they are counted)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"moto's server ended at start: {log.read().decode()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto's server did not listen on port {port} within {timeout_s} s")


def _credentials(iam, user: str, policy: dict) -> dict[str, str]:
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName=f"{user}-s3", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}


def _set_up(endpoint: str) -> tuple[dict[str, str], dict[str, str]]:
    """The bucket, and the credentials of a writer and a reader (exactly SET_UP_CALLS calls)."""
    options = {
        "endpoint_url": f"http://{endpoint}",
        "region_name": "us-east-1",
        "aws_access_key_id": "set-up",
        "aws_secret_access_key": "set-up",
    }
    boto3.client("s3", **options).create_bucket(Bucket=BUCKET)
    iam = boto3.client("iam", **options)
    return _credentials(iam, "writer", READ_WRITE), _credentials(iam, "reader", READ_ONLY)


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """moto's server on a free loopback port, with the bucket and two users, stopped at the end by its pid."""
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SET_UP_CALLS)}
    # its log (a line per request) goes to a file: a pipe nobody reads would fill and stall the server
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, process, log)
        endpoint = f"127.0.0.1:{port}"
        writer, reader = _set_up(endpoint)
        yield S3Server(endpoint, writer, reader)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@contextmanager
def writer_environment(server: S3Server) -> Iterator[None]:
    """The writer's credentials in this process's environment (and so in every Ray process it starts
    after), and no instance-metadata lookups (each would wait for a time-out off a cloud)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            **server.writer,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }.items():
            patch.setenv(name, value)
        yield
