"""A Ray cluster of a head and N worker nodes on this machine, on loopback, that stops cleanly.

For trying `distmeta submit` and `distmeta jobs` without machines, and for the
tests. Every node is a real `ray start` (the same command a cluster node runs),
with its ports chosen free and its dashboard (the job server) bound to 127.0.0.1.

Authentication: every node runs with Ray's token authentication on and the same
token, whatever the caller's environment says. Left to itself, `ray start --head`
turns token authentication on when it finds a token (`~/.ray/auth_token`, which
any `ray.init()` writes) and a joining node does not, so the node is refused. The
token is the one a client in the caller's environment presents (RAY_AUTH_TOKEN,
else the file RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token, generated there if
missing), copied to the cluster's folder, which every node reads.

Stopping: each node is started in a new session of its own, which every process
Ray starts for it inherits; `stop` ends those sessions' processes, anything else
using the cluster's Ray temp folder, and their descendants (see `processes.py`),
never another Ray process on the machine (`ray stop` would stop them all).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from distmeta.errors import DistmetaError
from distmeta.jobs import processes
from distmeta.jobs.auth import available_token

MARKER = "DISTMETA_LOCAL_CLUSTER"
STATE_FILE = "cluster.json"
TOKEN_FILE = "auth_token"
LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 120
START_ATTEMPTS = 3
RETRIED_FAILURES = (
    # Ray waits a fixed 30 s for a new node's raylet to register; on a loaded machine it can
    # take longer (seen in CI, with the other test process training on the same 2 cores).
    "timed out during startup",
    # A port chosen free was taken before Ray bound it (another process, or the kernel
    # handing one out twice): fresh ports cure it.
    "that is used by other components",
    "Address already in use",
)


@dataclass(frozen=True)
class LocalCluster:
    folder: str
    """Holds `cluster.json`, the token and the nodes' start logs."""
    ray_temp_dir: str
    """Ray's session folders, one per node: short, as Ray's socket paths must fit in 107 bytes."""
    gcs_address: str
    """What `ray start --address` and `distmeta train --address` take."""
    dashboard_address: str
    """The job server, for `distmeta submit/jobs --address`."""
    nodes: int
    cpus_per_node: int
    token_source: str = ""
    """Where the cluster's token came from: what a client must present."""
    sessions: list[int] = field(default_factory=list)
    """The session of each node started so far: every process of that node is in it."""

    @property
    def token_file(self) -> str:
        return str(Path(self.folder) / TOKEN_FILE)


AGENT_PORTS = 4
"""Ports each node's agents take: dashboard agent (listen, gRPC), metrics export, runtime env."""


def free_ports(count: int) -> list[int]:
    """`count` different free ports. The probes stay open until all are chosen: one at a
    time, the kernel may hand out a port it just gave back (Ray then refuses to start)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind((LOOPBACK, 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def start(
    folder: str | Path,
    worker_nodes: int = 1,
    cpus_per_node: int = 1,
    env: dict | None = None,
    temp_root: str | None = None,
    attempts: int = START_ATTEMPTS,
) -> LocalCluster:
    """Start a head and `worker_nodes` more nodes; `folder` must not hold a running cluster.

    Ray's session folders go in a new folder under `temp_root` (the system's temp folder
    by default), which must be short. A node that fails to start stops everything this
    call had started, and the error says which node failed and why. A failure that a
    fresh start can cure (see `RETRIED_FAILURES`) is retried, up to `attempts` starts in
    all, each with fresh ports and a fresh Ray temp folder.
    """
    if attempts < 1:
        raise DistmetaError(f"attempts: at least 1 start is needed, got {attempts}")
    folder = Path(folder).resolve()
    if processes_of(folder):
        raise DistmetaError(f"{folder}: a local cluster started from this folder is still running; stop it first")
    folder.mkdir(parents=True, exist_ok=True)
    caller_env = dict(os.environ if env is None else env)
    token, token_source = caller_token(caller_env)
    node_env = _node_environment(folder, caller_env)
    for attempt in range(1, attempts + 1):
        write_private(folder / TOKEN_FILE, token)  # `stop` removes it with the rest
        try:
            return _start_nodes(folder, worker_nodes, cpus_per_node, node_env, token_source, temp_root)
        except NodeStartFailed as failure:
            stop(folder)
            if not failure.retried or attempt == attempts:
                tries = f" (start {attempt} of {attempts})" if attempt > 1 else ""
                raise DistmetaError(f"{failure}; everything this start had started was stopped{tries}") from None
            again = f"starting again with fresh ports ({attempt + 1} of {attempts})"
            print(f"{failure}; stopped what it had started, {again}", file=sys.stderr)
        except BaseException:
            stop(folder)
            raise
    raise AssertionError("unreachable: the last attempt returns or raises")


def _start_nodes(
    folder: Path, worker_nodes: int, cpus_per_node: int, node_env: dict, token_source: str, temp_root: str | None
) -> LocalCluster:
    gcs_port, dashboard_port, client_port, *head_agent_ports = free_ports(3 + AGENT_PORTS)
    ray_temp = Path(tempfile.mkdtemp(prefix="dm-ray-", dir=temp_root))  # short: see `ray_temp_dir`
    cluster = LocalCluster(
        str(folder),
        str(ray_temp),
        f"{LOOPBACK}:{gcs_port}",
        f"http://{LOOPBACK}:{dashboard_port}",
        1 + worker_nodes,
        cpus_per_node,
        token_source,
    )
    _ray_start(
        cluster,
        "head",
        node_env,
        [
            "--head",
            f"--port={gcs_port}",
            "--include-dashboard=true",
            f"--dashboard-host={LOOPBACK}",
            f"--dashboard-port={dashboard_port}",
            f"--ray-client-server-port={client_port}",
            f"--temp-dir={ray_temp / 'head'}",
            f"--num-cpus={cpus_per_node}",
        ],
        head_agent_ports,
    )
    for index in range(worker_nodes):
        # A temp folder per node: nodes sharing one would share their runtime-env
        # folders, and one node's clean-up would delete a job's files under another.
        _ray_start(
            cluster,
            f"node{index + 1}",
            node_env,
            [
                f"--address={cluster.gcs_address}",
                f"--temp-dir={ray_temp / f'node{index + 1}'}",
                f"--num-cpus={cpus_per_node}",
            ],
            free_ports(AGENT_PORTS),
        )
    return cluster


def caller_token(env: dict) -> tuple[str, str]:
    """The token a Ray client in `env` presents, and where it came from.

    Without any, one is generated and saved as ~/.ray/auth_token, as `ray.init()` does,
    so that clients on this machine find it.
    """
    if env.get("RAY_AUTH_TOKEN_PATH") and available_token(env) is None:
        path = Path(env["RAY_AUTH_TOKEN_PATH"]).expanduser()
        raise DistmetaError(
            f"RAY_AUTH_TOKEN_PATH={path}: no token there (missing or empty file); unset it to "
            f"use ~/.ray/auth_token, or generate one with `ray get-auth-token --generate`"
        )
    found = available_token(env)
    if found is not None:
        return found
    default = Path(env.get("HOME") or Path.home()) / ".ray" / "auth_token"
    default.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(32)
    write_private(default, token)
    return token, f"{default} (generated now)"


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by its owner only (it is a credential)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    os.chmod(path, 0o600)


def _node_environment(folder: Path, env: dict) -> dict:
    env = dict(env)
    env[MARKER] = str(folder)
    # Every node the same: token authentication on, the cluster's own copy of the token.
    env["RAY_AUTH_MODE"] = "token"
    env["RAY_AUTH_TOKEN_PATH"] = str(folder / TOKEN_FILE)
    env.pop("RAY_AUTH_TOKEN", None)
    # Jobs run `python -m distmeta` on the nodes: the Python of this environment.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _ray_start(cluster: LocalCluster, node: str, env: dict, arguments: list[str], agent_ports: list[int]) -> None:
    # Each node's agents get ports of their own: their defaults would collide on one machine.
    # (Nodes already started hold theirs, so the kernel does not hand them out again.)
    listen, grpc, metrics, runtime_env = agent_ports
    ports = [
        f"--dashboard-agent-listen-port={listen}",
        f"--dashboard-agent-grpc-port={grpc}",
        f"--metrics-export-port={metrics}",
        f"--runtime-env-agent-port={runtime_env}",
    ]
    command = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        f"--node-ip-address={LOOPBACK}",
        "--disable-usage-stats",
        *arguments,
        *ports,
    ]
    log = Path(cluster.folder) / f"start-{node}.log"
    with log.open("w") as output:
        # A session of its own: how `stop` knows every process of this node (see processes.py).
        started = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        cluster.sessions.append(started.pid)
        _save(cluster)  # before waiting: a `stop` from elsewhere finds this node even if the start hangs
        try:
            returncode = started.wait(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise NodeStartFailed(f"ray start ({node}) did not finish within {START_TIMEOUT_S} s; log: {log}") from None
    if returncode != 0:
        reason = failure_reason(log)
        raise NodeStartFailed(f"ray start ({node}) failed: {reason}; log: {log}", retried=is_retried(log))


class NodeStartFailed(DistmetaError):
    """A `ray start` that failed; `retried` when a fresh start may well succeed."""

    def __init__(self, message: str, retried: bool = False):
        super().__init__(message)
        self.retried = retried


def is_retried(log: Path) -> bool:
    text = log.read_text(errors="replace")
    return any(failure in text for failure in RETRIED_FAILURES)


def failure_reason(log: Path) -> str:
    """The line of a `ray start` log that says why it failed (its last error line)."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "error" in line or "Exception" in line]
    reason = (errors or lines or ["(empty log)"])[-1]
    return reason if len(reason) <= 300 else reason[:297] + "..."


def _save(cluster: LocalCluster) -> None:
    (Path(cluster.folder) / STATE_FILE).write_text(json.dumps(asdict(cluster), indent=2))


def load(folder: str | Path) -> LocalCluster:
    state = Path(folder).resolve() / STATE_FILE
    if not state.exists():
        raise DistmetaError(f"{state}: no local cluster was started from this folder")
    return LocalCluster(**json.loads(state.read_text()))


def processes_of(folder: str | Path) -> list[int]:
    """Every process of the local cluster of `folder`: its nodes' sessions, whatever uses its
    Ray temp folder or carries its marker, and their descendants."""
    folder = Path(folder).resolve()
    state = folder / STATE_FILE
    cluster = LocalCluster(**json.loads(state.read_text())) if state.exists() else None
    return processes.processes_of(
        sessions=cluster.sessions if cluster else (),
        folders=[cluster.ray_temp_dir] if cluster else (),
        environment=f"{MARKER}={folder}",
    )


def stop(folder: str | Path, grace_s: float = 5.0) -> int:
    """Stop every process of the local cluster of `folder`: SIGTERM, then SIGKILL after `grace_s`
    (its GCS server and autoscaler monitor outwait a SIGTERM by more than 10 s; nothing of value
    lives in a local cluster: runs and checkpoints are in their storage folders).

    Returns how many processes there were. Other Ray processes are left alone.
    """
    folder = Path(folder).resolve()
    try:
        stopped = processes.stop_processes(lambda: processes_of(folder), grace_s)
    except RuntimeError as error:
        raise DistmetaError(f"the local cluster in {folder}: {error}") from None
    state = folder / STATE_FILE
    if state.exists():
        shutil.rmtree(load(folder).ray_temp_dir, ignore_errors=True)
        state.unlink()
    (folder / TOKEN_FILE).unlink(missing_ok=True)
    return len(stopped)
