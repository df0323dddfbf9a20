"""Shared test helpers: small models and tasks, in float64 where gradients are compared."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import ray
import torch

from distmeta.algorithms import build_algorithm
from distmeta.config import AlgorithmConfig
from distmeta.models import MLP, Conv4, initial_parameters
from distmeta.tasks import TaskBatch
from tests.ray_processes import TEST_RUN_ROOT, leaves_no_ray_process

# Ray Train's controller polls its workers every 2 s; the tests' runs are a few steps
# long, so they would mostly wait. Ray's own tests poll faster in the same way.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
# Each run's preemption watcher (observability of spot nodes being drained: none are, here) is
# one more actor process to start on 2 cores while the run's workers start.
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
# The clusters the tests start report nothing to Ray's usage-statistics server.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Which pytest process started this run (pytest-xdist's workers inherit the controller's), so
# that the Ray clean-up stops only what this run started (tests/ray_processes.py).
os.environ.setdefault(TEST_RUN_ROOT, str(os.getpid()))

SHARED_OMNIGLOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "omniglot"

# The smallest Omniglot run the tests train: generated images (no data needed), 3-way 1-shot, 16 pixels,
# a Conv4 of 4 channels. Tests add the algorithm and training settings they need.
TINY_SYNTHETIC_OMNIGLOT = [
    "task.name=omniglot",
    "task.omniglot.synthetic=true",
    "task.ways=3",
    "task.shots=1",
    "task.query_shots=2",
    "task.omniglot.image_size=16",
    "model.channels=4",
]


# Fixtures that start a Ray cluster (or a Ray node's folder): a test using one is `slow`,
# which `make test-fast` leaves out. Tests that start Ray some other way are marked by hand.
RAY_CLUSTER_FIXTURES = {
    "cluster",
    "job_cluster",
    "two_nodes",
    "autoscaling_cluster",
    "fresh_autoscaling_cluster",
    "cluster_with_logical_gpus",
    "ray_home",
}


def pytest_configure(config):
    """Under pytest-xdist, each worker leads its own session: the leftover-process check counts the
    processes of this session as this test's, and must not see the other worker's clusters."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.setsid()
        # One torch thread per worker (and per command a test starts), as many as the cores: two
        # workers of two threads each over-subscribed the two cores (an in-process run of 200 sinusoid
        # steps, under a second alone, took 41 s beside the other worker's Ray test).
        torch.set_num_threads(1)
        os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(items):
    for item in items:
        if RAY_CLUSTER_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
    # Files with slow tests first, each file's tests kept together and in order: the xdist workers
    # then end on the short tests, not one of them on a long Ray file while the others wait.
    files_with_slow_tests = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in files_with_slow_tests)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Tests never write to the real home directory (caches, Ray tokens)."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))


@pytest.fixture(scope="session")
def short_temp():
    """A temp root with a short path, for Ray folders: Ray's socket paths must fit in 107 bytes."""
    folder = tempfile.mkdtemp(prefix="dt-", dir="/tmp")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def short_folder(short_temp):
    """A new folder under `short_temp`, for a Ray node's temp folder: pytest's own temp folders can
    be too deep for Ray's sockets (their paths must fit in 107 bytes)."""
    return lambda prefix: Path(tempfile.mkdtemp(prefix=prefix, dir=short_temp))


@pytest.fixture(scope="session")
def temp_roots(tmp_path_factory, short_temp) -> list[str]:
    """Every folder under which this test run puts Ray's session folders."""
    return [str(tmp_path_factory.getbasetemp()), short_temp]


@pytest.fixture(autouse=True)
def _no_ray_process_left(request, temp_roots):
    """After every test, no Ray process it started is left running (agents included)."""
    with leaves_no_ray_process(temp_roots, request.node.nodeid):
        yield


@pytest.fixture
def one_torch_thread():
    """One torch thread for a test: on a shared, loaded CPU, tiny tensors on two threads waiting
    on each other made the learned-optimiser tests a hundred times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_mlp(in_features: int = 1, out_features: int = 1) -> MLP:
    return MLP(in_features, (8, 8), out_features).double()


def tiny_conv4(ways: int = 3) -> Conv4:
    return Conv4(1, 4, ways, 28).double()


def make_algorithm(name: str, model, is_classification: bool, ways: int = 1, **overrides):
    values = dict(name=name, inner_lr=0.1 if not is_classification else 0.4, inner_steps=2, test_inner_steps=3)
    values.update(overrides)
    return build_algorithm(AlgorithmConfig(**values), model, is_classification, ways)


def meta_params_for(algorithm, model, seed: int = 0):
    return algorithm.init_meta_parameters(initial_parameters(model, seed))


def regression_batch(tasks: int = 3, shots: int = 5, in_features: int = 1, seed: int = 0) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(tasks, 2 * shots, in_features, generator=g, dtype=torch.float64) * 10 - 5
    y = torch.sin(x.sum(-1, keepdim=True)) * (1 + torch.arange(tasks, dtype=torch.float64).view(-1, 1, 1))
    return TaskBatch(x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:], seed=seed)


def classification_batch(
    tasks: int = 3,
    ways: int = 3,
    shots: int = 1,
    query: int = 2,
    image: bool = True,
    in_features: int = 4,
    seed: int = 0,
) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    shape = (1, 28, 28) if image else (in_features,)
    support_x = torch.rand(tasks, ways * shots, *shape, generator=g, dtype=torch.float64)
    query_x = torch.rand(tasks, ways * query, *shape, generator=g, dtype=torch.float64)
    support_y = torch.arange(ways).repeat_interleave(shots).repeat(tasks, 1)
    query_y = torch.arange(ways).repeat_interleave(query).repeat(tasks, 1)
    return TaskBatch(support_x, support_y, query_x, query_y, seed=seed)


@pytest.fixture(scope="session")
def ray_home(tmp_path_factory):
    """One home for every Ray cluster this test process starts: `ray.init` writes
    `~/.ray/auth_token` once and the driver keeps it, so a later cluster started
    under another HOME would not find the token the driver presents."""
    return tmp_path_factory.mktemp("ray-home")


@pytest.fixture(scope="module")
def cluster(ray_home, short_folder, temp_roots):
    """One local Ray cluster for this module, on loopback, shut down at the end, leaving no process.
    Its own, even where another Ray cluster runs on this machine (address "local")."""
    with pytest.MonkeyPatch.context() as patch, leaves_no_ray_process(temp_roots, "the module's Ray cluster"):
        patch.setenv("HOME", str(ray_home))
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            _temp_dir=str(short_folder("ray-")),
            configure_logging=False,
            log_to_driver=False,
        )
        try:
            yield
        finally:
            ray.shutdown()
