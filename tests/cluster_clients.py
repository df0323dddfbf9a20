"""Asking a running local cluster about itself, as a client authenticating the way its start printed."""

import subprocess
import sys


def alive_nodes(cluster, env: dict) -> int:
    """Nodes alive in the cluster, asked by a Ray client authenticating as the start printed."""
    script = (
        f"import ray; ray.init(address='{cluster.gcs_address}', log_to_driver=False); "
        f"print(sum(node['Alive'] for node in ray.nodes())); ray.shutdown()"
    )
    env = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": cluster.token_file}
    env.pop("RAY_AUTH_TOKEN", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1])
