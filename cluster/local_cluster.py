"""A Ray cluster of a head and N worker nodes on this machine, on loopback: for trying
`distmeta submit` and `distmeta jobs` without machines.

    python cluster/local_cluster.py start --nodes 2 --cpus-per-node 1   # prints the addresses
    distmeta submit train --address http://127.0.0.1:PORT --storage /tmp/runs --wait
    python cluster/local_cluster.py status
    python cluster/local_cluster.py stop                                # only this cluster's processes

Each node is a real `ray start`; the dashboard (job server) listens on 127.0.0.1 only.
Every node runs with Ray's token authentication, using the token a client in this
environment presents (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token, made if
missing). `stop` ends exactly the processes this cluster started, agents included (never
`ray stop`, which would end every Ray process on the machine).
"""

import argparse
import sys

from distmeta.errors import DistmetaError
from distmeta.jobs import local_cluster

DEFAULT_FOLDER = ".local-cluster"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "status", "stop"])
    parser.add_argument(
        "--folder",
        default=DEFAULT_FOLDER,
        help=f"where the cluster's state and start logs live (default {DEFAULT_FOLDER})",
    )
    parser.add_argument("--nodes", type=int, default=1, help="worker nodes besides the head (default 1)")
    parser.add_argument("--cpus-per-node", type=int, default=1, help="CPUs each node offers (default 1)")
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            cluster = local_cluster.start(args.folder, args.nodes, args.cpus_per_node)
            print(f"started a head and {args.nodes} worker node(s), {args.cpus_per_node} CPU(s) each")
            print(f"job server:  {cluster.dashboard_address}   (distmeta submit/jobs --address)")
            print(f"ray address: {cluster.gcs_address}   (distmeta train --address, ray start --address)")
            print(
                f"token auth:  on, with the token of {cluster.token_source}; clients in this environment present "
                f"it; elsewhere: export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={cluster.token_file}"
            )
            return 0
        if args.action == "status":
            cluster = local_cluster.load(args.folder)
            running = len(local_cluster.processes_of(args.folder))
            print(f"{cluster.nodes} node(s); job server {cluster.dashboard_address}; {running} process(es) running")
            return 0 if running else 1
        stopped = local_cluster.stop(args.folder)
        print(f"stopped {stopped} process(es) of the local cluster in {args.folder}")
        return 0
    except DistmetaError as error:
        print(f"local_cluster: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
