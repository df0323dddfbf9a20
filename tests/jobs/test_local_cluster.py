"""The loopback cluster: ports, token authentication whatever the caller's environment, and
stopping every process it started (a cluster started from a home that `ray.init()` left a token
in, and whole submit round trips, are in test_submit.py)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distmeta.errors import DistmetaError
from distmeta.jobs import local_cluster, processes
from tests.cluster_clients import alive_nodes
from tests.ray_processes import leaves_no_ray_process, session_folders


def test_the_ports_chosen_for_one_node_are_all_different():
    # One at a time, the kernel handed the same port to two agents of one node and Ray refused to start.
    for _ in range(20):
        ports = local_cluster.free_ports(3 + local_cluster.AGENT_PORTS)
        assert len(set(ports)) == len(ports) == 7


def caller_environment(home: Path, **extra) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    return {**env, "HOME": str(home), **extra}


def jobs_list(cluster, env: dict) -> subprocess.CompletedProcess:
    """`distmeta jobs list` against the cluster, as a client in `env` runs it."""
    return subprocess.run(
        [sys.executable, "-m", "distmeta", "jobs", "list", "--address", cluster.dashboard_address],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_a_cluster_starts_whatever_auth_settings_the_caller_has(tmp_path, short_temp, temp_roots):
    # A token in HOME, another in RAY_AUTH_TOKEN and authentication switched off: every node
    # still gets one and the same setting, token authentication on, with the token a client
    # in this environment presents (RAY_AUTH_TOKEN comes first, as in Ray).
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("a" * 64)
    env = caller_environment(home, RAY_AUTH_TOKEN="b" * 64, RAY_AUTH_MODE="disabled")
    folder = tmp_path / "cluster"
    with leaves_no_ray_process(temp_roots, "the local cluster"):
        cluster = local_cluster.start(folder, worker_nodes=1, env=env, temp_root=short_temp)
        try:
            assert cluster.token_source == "RAY_AUTH_TOKEN"
            assert alive_nodes(cluster, env) == 2
            presented = caller_environment(home, RAY_AUTH_TOKEN="b" * 64)
            assert jobs_list(cluster, presented).returncode == 0
            wrong = jobs_list(cluster, caller_environment(home))  # the token in HOME is not this cluster's
            assert wrong.returncode == 2
            assert f"refused the token of {home / '.ray' / 'auth_token'}" in wrong.stderr
        finally:
            local_cluster.stop(folder)
    assert local_cluster.processes_of(folder) == []


def test_a_missing_token_file_is_named_before_anything_starts(tmp_path):
    env = caller_environment(tmp_path, RAY_AUTH_TOKEN_PATH=str(tmp_path / "nowhere"))
    with pytest.raises(DistmetaError, match="RAY_AUTH_TOKEN_PATH=.*nowhere: no token there"):
        local_cluster.start(tmp_path / "cluster", env=env)
    assert not (tmp_path / "cluster" / local_cluster.STATE_FILE).exists()


@pytest.mark.slow
def test_a_head_that_fails_for_good_stops_what_it_had_started_and_is_not_tried_again(
    tmp_path, short_temp, temp_roots, capfd
):
    # Ray refuses a negative CPU count only after its GCS and dashboard are up.
    folder = tmp_path / "cluster"
    with leaves_no_ray_process(temp_roots, "the failed start"):
        with pytest.raises(DistmetaError) as failure:
            local_cluster.start(
                folder, worker_nodes=1, cpus_per_node=-1, env=caller_environment(tmp_path), temp_root=short_temp
            )
        message = str(failure.value)
        assert message.startswith("ray start (head) failed: ValueError: Resource quantities must be nonnegative")
        assert message.endswith("; everything this start had started was stopped") and "\n" not in message
        assert "starting again" not in capfd.readouterr().err
        assert local_cluster.processes_of(folder) == []
        assert not (folder / local_cluster.STATE_FILE).exists()


def first_worker_node_given_a_port_twice(monkeypatch) -> list[list[int]]:
    """From now on, the first worker node's agent ports hold one port twice, as the kernel once
    handed one out: Ray refuses to start that node, after the head is already up. Returns the
    ports chosen, one list per call."""
    chosen = []
    free_ports = local_cluster.free_ports

    def ports_with_one_taken_twice(count):
        ports = free_ports(count)
        chosen.append(ports)
        if len(chosen) == 2:  # the first start's worker node
            ports[1] = ports[0]
        return ports

    monkeypatch.setattr(local_cluster, "free_ports", ports_with_one_taken_twice)
    return chosen


@pytest.mark.slow
def test_a_node_that_cannot_start_for_a_passing_reason_stops_what_the_start_had_started_and_starts_again(
    tmp_path, short_temp, temp_roots, monkeypatch, capfd
):
    # A port taken before Ray bound it, or a raylet slower than Ray's fixed 30 s wait on a busy
    # machine: a fresh start cures both.
    chosen = first_worker_node_given_a_port_twice(monkeypatch)
    saved = []  # each start's sessions and Ray temp folder, as `stop` finds them
    save = local_cluster._save
    monkeypatch.setattr(local_cluster, "_save", lambda cluster: saved.append(cluster) or save(cluster))
    folder = tmp_path / "cluster"
    with leaves_no_ray_process(temp_roots, "the retried start"):
        cluster = local_cluster.start(folder, worker_nodes=1, env=caller_environment(tmp_path), temp_root=short_temp)
        try:
            first = saved[0]
            # the start that came up is the last: the second, or the third on a machine busy enough
            # that the second's head timed out at startup. Each start chose its head's ports, then
            # its worker node's: the GCS port is the first of the head's, second to last.
            assert first.ray_temp_dir != cluster.ray_temp_dir and cluster.gcs_address.endswith(f":{chosen[-2][0]}")
            assert processes.processes_of(sessions=first.sessions, folders=[first.ray_temp_dir]) == []
            assert alive_nodes(cluster, caller_environment(tmp_path)) == 2
            said = capfd.readouterr().err
            assert "ray start (node1) failed: ValueError: " in said
            assert f"port number {chosen[1][0]} that is used by other components" in said
            assert "stopped what it had started, starting again with fresh ports (2 of 3)" in said
        finally:
            local_cluster.stop(folder)
    assert local_cluster.processes_of(folder) == []


def test_processes_are_found_by_session_by_folder_and_by_descent(tmp_path):
    # A child in a session of its own, found through its parent; a process found by the folder it holds open.
    (tmp_path / "held").write_text("")
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time; "
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], "
            "start_new_session=True); time.sleep(60)",
        ],
        start_new_session=True,
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", f"f = open({str(tmp_path / 'held')!r}); import time; time.sleep(60)"]
    )
    try:
        deadline = time.monotonic() + 10
        while len(processes.processes_of(sessions=[parent.pid])) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        by_session = processes.processes_of(sessions=[parent.pid])
        assert parent.pid in by_session and len(by_session) == 2
        while holder.pid not in processes.processes_of(folders=[str(tmp_path)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes.processes_of(folders=[str(tmp_path)]) == [holder.pid]
        stopped = processes.stop_processes(lambda: processes.processes_of(sessions=[parent.pid]), grace_s=2)
        assert len(stopped) == 2 and processes.processes_of(sessions=[parent.pid]) == []
    finally:
        for process in (parent, holder):
            process.kill()
            process.wait()


def test_a_session_folder_names_the_cluster_a_process_serves():
    process = processes.Process(2**31, 0, 1, 0, "raylet --log_dir=/tmp/x/session_2026-11-25_21-15-04_109599_6407/logs")
    assert session_folders(process) == {"/tmp/x/session_2026-11-25_21-15-04_109599_6407"}
