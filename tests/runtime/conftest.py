"""A real local Ray cluster for the runtime tests (2 CPUs on loopback): no mock of Ray."""

import pytest
import ray


@pytest.fixture(scope="session")
def ray_home(tmp_path_factory):
    """One home for every Ray cluster this test process starts: `ray.init` writes
    `~/.ray/auth_token` once and the driver keeps it, so a later cluster started
    under another HOME would not find the token the driver presents."""
    return tmp_path_factory.mktemp("ray-home")


@pytest.fixture(scope="module")
def cluster(ray_home, tmp_path_factory):
    """One local Ray cluster for this module, on loopback, shut down at the end."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(ray_home))
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(tmp_path_factory.mktemp("ray-tmp")),
                 configure_logging=False, log_to_driver=False)
        try:
            yield
        finally:
            ray.shutdown()
