"""The loopback cluster's port choice (starting one is covered by test_submit.py)."""

from distmeta.jobs import local_cluster


def test_the_ports_chosen_for_one_node_are_all_different():
    # One at a time, the kernel handed the same port to two agents of one node and Ray refused to start.
    for _ in range(20):
        ports = local_cluster.free_ports(3 + local_cluster.AGENT_PORTS)
        assert len(set(ports)) == len(ports) == 7
