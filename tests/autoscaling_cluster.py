"""Ray's own autoscaling test cluster, made safe to run beside other people's Ray clusters.

`ray.cluster_utils.AutoscalingCluster` starts a head node whose autoscaler launches
fake nodes (real raylets on this machine, with whatever logical resources their node
type declares: "GPU" nodes without a GPU). As shipped it cannot be used here: its
`start` and `shutdown` run `ray stop --force`, which kills every Ray process on the
machine, its base config (fake_multi_node/example.yaml) is missing from the wheel, and
its head listens on the fixed port 6379. This subclass keeps its provider and config
layout but gives the head its own port and temp folder, and stops exactly the processes
of that folder (the fake nodes inherit RAY_TMPDIR from the autoscaler that starts them).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import ray
from ray.cluster_utils import AutoscalingCluster

from tests.ray_processes import kill_processes_of

RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalAutoscalingCluster(AutoscalingCluster):
    """`AutoscalingCluster(head_resources, worker_node_types)` on its own port and temp folder."""

    def __init__(self, head_resources: dict, worker_node_types: dict, temp_dir: Path, **config_kwargs):
        self.temp_dir = temp_dir
        self.config_file = temp_dir / "autoscaling.json"
        self.port = free_port()
        super().__init__(head_resources, worker_node_types, **config_kwargs)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _generate_config(self, head_resources, worker_node_types, autoscaler_v2=False, **config_kwargs):
        # the content of Ray's fake_multi_node/example.yaml, with this cluster's GCS address
        config = {
            "cluster_name": "fake_multinode",
            "max_workers": 8,
            "provider": {
                "type": "fake_multinode",
                "use_node_id_as_ip": True,
                "disable_node_updaters": True,
                "disable_launch_config_check": True,
                "gcs_address": self.address,
            },
            "available_node_types": {
                **worker_node_types,
                "ray.head.default": {"resources": head_resources, "node_config": {}, "max_workers": 0},
            },
            "head_node_type": "ray.head.default",
            "auth": {},
            "upscaling_speed": 1.0,
            "idle_timeout_minutes": 1,
            "docker": {},
            "initialization_commands": [],
            "setup_commands": [],
            "head_setup_commands": [],
            "worker_setup_commands": [],
            "head_start_ray_commands": [],
            "worker_start_ray_commands": [],
            "file_mounts": {},
            "cluster_synced_files": [],
            "file_mounts_sync_continuously": False,
            "rsync_exclude": [],
            "rsync_filter": [],
        }
        config.update(config_kwargs)
        return config

    def start(self, _system_config=None, override_env=None):
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(json.dumps(self._config))
        resources = dict(self._head_resources)
        command = [
            RAY,
            "start",
            "--head",
            f"--port={self.port}",
            f"--autoscaling-config={self.config_file}",
            f"--temp-dir={self.temp_dir}",
            f"--num-cpus={resources.pop('CPU', 0)}",
            f"--num-gpus={resources.pop('GPU', 0)}",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ]
        if resources:
            command.append(f"--resources={json.dumps(resources)}")
        env = {
            **os.environ,
            "AUTOSCALER_UPDATE_INTERVAL_S": "1",
            "RAY_FAKE_CLUSTER": "1",
            "RAY_TMPDIR": str(self.temp_dir),
            **(override_env or {}),
        }
        subprocess.run(command, env=env, check=True, capture_output=True)
        self._wait_for_the_autoscaler()

    def _wait_for_the_autoscaler(self, timeout_s: float = 30) -> None:
        """Until the autoscaler's first report: before it, nothing says the cluster autoscales."""
        from ray._raylet import GcsClient

        client = GcsClient(address=self.address)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = client.internal_kv_get(b"__autoscaling_status", None)
            if status and "autoscaler_report" in json.loads(status):
                return
            time.sleep(0.5)
        raise TimeoutError("the fake cluster's autoscaler did not report")

    def shutdown(self):
        if ray.is_initialized():
            ray.shutdown()
        kill_processes_of(str(self.temp_dir))
        ray._private.services.find_gcs_addresses.cache_clear()
