"""A Ray cluster of a head and N worker nodes on this machine, on loopback, that stops cleanly.

For trying `distmeta submit` and `distmeta jobs` without machines, and for the
tests. Every node is a real `ray start` (the same command a cluster node runs),
with its ports chosen free and its dashboard (the job server) bound to
127.0.0.1. Every process of the cluster inherits the environment variable
`DISTMETA_LOCAL_CLUSTER=<folder>`, which is how `stop` finds exactly the
processes this cluster started and no other Ray process on the machine:
`ray stop` would stop them all.
"""

from __future__ import annotations

import json
import os
import signal
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from distmeta.errors import DistmetaError

MARKER = "DISTMETA_LOCAL_CLUSTER"
STATE_FILE = "cluster.json"
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class LocalCluster:
    folder: str
    """Holds `cluster.json` and the nodes' start logs."""
    ray_temp_dir: str
    """Ray's session folders, one per node: short, as Ray's socket paths must fit in 107 bytes."""
    gcs_address: str
    """What `ray start --address` and `distmeta train --address` take."""
    dashboard_address: str
    """The job server, for `distmeta submit/jobs --address`."""
    nodes: int
    cpus_per_node: int

    @property
    def marker(self) -> str:
        return f"{MARKER}={self.folder}"


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


def start(folder: str | Path, worker_nodes: int = 1, cpus_per_node: int = 1, env: dict | None = None) -> LocalCluster:
    """Start a head and `worker_nodes` more nodes; `folder` must not hold a running cluster."""
    folder = Path(folder).resolve()
    if processes_of(folder):
        raise DistmetaError(f"{folder}: a local cluster started from this folder is still running; stop it first")
    folder.mkdir(parents=True, exist_ok=True)
    env = _node_environment(folder, env)
    gcs_port, dashboard_port, client_port, *head_agent_ports = free_ports(3 + AGENT_PORTS)
    ray_temp = Path(tempfile.mkdtemp(prefix="distmeta-ray-"))
    cluster = LocalCluster(str(folder), str(ray_temp), f"{LOOPBACK}:{gcs_port}", f"http://{LOOPBACK}:{dashboard_port}",
                           1 + worker_nodes, cpus_per_node)
    try:
        _ray_start(folder, "head", env, ["--head", f"--port={gcs_port}", "--include-dashboard=true",
                                          f"--dashboard-host={LOOPBACK}", f"--dashboard-port={dashboard_port}",
                                          f"--ray-client-server-port={client_port}",
                                          f"--temp-dir={ray_temp / 'head'}", f"--num-cpus={cpus_per_node}"],
                   head_agent_ports)
        for index in range(worker_nodes):
            # A temp folder per node: nodes sharing one would share their runtime-env
            # folders, and one node's clean-up would delete a job's files under another.
            _ray_start(folder, f"node{index + 1}", env, [f"--address={cluster.gcs_address}",
                                                          f"--temp-dir={ray_temp / f'node{index + 1}'}",
                                                          f"--num-cpus={cpus_per_node}"],
                       free_ports(AGENT_PORTS))
    except BaseException:
        stop(folder)
        shutil.rmtree(ray_temp, ignore_errors=True)
        raise
    (folder / STATE_FILE).write_text(json.dumps(asdict(cluster), indent=2))
    return cluster


def _node_environment(folder: Path, env: dict | None) -> dict:
    env = dict(os.environ if env is None else env)
    env[MARKER] = str(folder)
    # Jobs run `python -m distmeta` on the nodes: the Python of this environment.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _ray_start(folder: Path, node: str, env: dict, arguments: list[str], agent_ports: list[int]) -> None:
    # Each node's agents get ports of their own: their defaults would collide on one machine.
    # (Nodes already started hold theirs, so the kernel does not hand them out again.)
    listen, grpc, metrics, runtime_env = agent_ports
    ports = [f"--dashboard-agent-listen-port={listen}", f"--dashboard-agent-grpc-port={grpc}",
             f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}"]
    command = [str(Path(sys.executable).parent / "ray"), "start", f"--node-ip-address={LOOPBACK}",
               "--disable-usage-stats", *arguments, *ports]
    log = folder / f"start-{node}.log"
    with log.open("w") as output:
        finished = subprocess.run(command, env=env, stdout=output, stderr=subprocess.STDOUT, timeout=120)
    if finished.returncode != 0:
        raise DistmetaError(f"ray start ({node}) failed with exit code {finished.returncode}; see {log}")


def load(folder: str | Path) -> LocalCluster:
    state = Path(folder).resolve() / STATE_FILE
    if not state.exists():
        raise DistmetaError(f"{state}: no local cluster was started from this folder")
    return LocalCluster(**json.loads(state.read_text()))


def processes_of(folder: str | Path) -> list[int]:
    """Processes started by the local cluster of `folder` (its marker is in their environment)."""
    marker = f"\0{MARKER}={Path(folder).resolve()}\0".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environment = b"\0" + Path(f"/proc/{pid}/environ").read_bytes() + b"\0"
        except OSError:
            continue
        if marker in environment and int(pid) != os.getpid():
            found.append(int(pid))
    return found


def stop(folder: str | Path, grace_s: float = 10.0) -> int:
    """Stop every process of the local cluster of `folder`: SIGTERM, then SIGKILL after `grace_s`.

    Returns how many processes there were. Other Ray processes are left alone.
    """
    pids = processes_of(folder)
    _signal(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while processes_of(folder) and time.monotonic() < deadline:
        time.sleep(0.2)
    deadline = time.monotonic() + 10
    while (left := processes_of(folder)) and time.monotonic() < deadline:
        _signal(left, signal.SIGKILL)
        time.sleep(0.2)
    if processes_of(folder):
        raise DistmetaError(f"processes of the local cluster {folder} are still alive: {processes_of(folder)}")
    state = Path(folder).resolve() / STATE_FILE
    if state.exists():
        shutil.rmtree(load(folder).ray_temp_dir, ignore_errors=True)
        state.unlink()
    return len(pids)


def _signal(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
