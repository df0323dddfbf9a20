"""The device rule on a real local Ray cluster whose 2 GPUs are logical only (this machine has
none): the driver stays off the GPU, the workers take the meta-test, a CPU torch asked for GPUs
stops the run once."""

import pytest
import ray
import torch

from distmeta.config import load_config
from distmeta.devices import CudaTorchError
from distmeta.errors import ConfigError
from distmeta.evaluation import evaluate
from distmeta.experiment import build_experiment
from distmeta.runtime.launcher import ClusterRequest, train_distributed

TINY = [
    "train.steps=3",
    "train.meta_batch_size=4",
    "train.log_every=3",
    "train.val_every=0",
    "train.checkpoint_every=3",
    "model.hidden_sizes=[16, 16]",
    "eval.tasks=10",
    "eval.batch_size=4",
]


@pytest.fixture(scope="module")
def cluster_with_logical_gpus(ray_home, short_folder):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(ray_home))
        ray.init(
            address="local",
            num_cpus=2,
            num_gpus=2,
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


def run(tmp_path, name, workers, gpus_per_worker, *overrides, final_eval=False):
    config = load_config(None, [*TINY, *overrides])
    request = ClusterRequest(workers=workers, gpus_per_worker=gpus_per_worker, storage=str(tmp_path), name=name)
    return train_distributed(config, request, print_fn=lambda *_: None, final_eval=final_eval)


def test_the_driver_never_touches_a_gpu_and_the_workers_take_the_meta_test(
    cluster_with_logical_gpus, tmp_path, monkeypatch
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU head: any use of it would raise here
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    result = run(tmp_path, "cpu-workers", 2, 0, final_eval=True)
    assert not torch.cuda.is_initialized()
    assert all(value.device.type == "cpu" for value in result.meta_params.values())
    assert result.test.tasks == 10 and result.summary["devices"] == ["cpu", "cpu"]
    monkeypatch.undo()
    # two workers shared the meta-test's tasks: the same numbers as one process taking them all
    in_process = evaluate(build_experiment(load_config(None, TINY)), result.meta_params, "test")
    assert result.test.mean == pytest.approx(in_process.mean, rel=1e-5)
    assert result.test.ci95 == pytest.approx(in_process.ci95, rel=1e-4)


def test_train_device_cuda_passes_a_cpu_head_and_a_cpu_torch_on_the_gpu_nodes_stops_the_run_once(
    cluster_with_logical_gpus, tmp_path
):
    with pytest.raises(
        CudaTorchError,
        match=rf"^on the GPU nodes: GPUs were asked for, but torch "
        rf"{torch.__version__.replace('+', '[+]')} is a CPU-only build",
    ):
        run(tmp_path, "cpu-torch", 2, 1, "train.device=cuda")
    run_dir = tmp_path / "cpu-torch"
    assert not (run_dir / "metrics.jsonl").exists() and not list(run_dir.glob("checkpoint_*"))


def test_train_device_cuda_without_gpus_for_the_workers_is_refused_naming_the_field(
    cluster_with_logical_gpus, tmp_path
):
    with pytest.raises(ConfigError, match=r"^train\.device: cuda, but the workers get no GPU"):
        run(tmp_path, "no-gpus", 1, 0, "train.device=cuda")


def test_a_worker_given_a_gpu_by_a_cpu_torch_stops_as_a_user_error_before_building_anything(monkeypatch):
    import ray.train.torch

    from distmeta.runtime.worker import worker_experiment

    monkeypatch.setattr(ray.train.torch, "get_device", lambda: pytest.fail("asked Ray for a device"))
    with pytest.raises(CudaTorchError, match="is a CPU-only build"):
        worker_experiment(load_config(None, TINY), gpus_per_worker=1)
    monkeypatch.setattr(ray.train.torch, "get_device", lambda: torch.device("cpu"))
    assert worker_experiment(load_config(None, TINY), gpus_per_worker=0).device == torch.device("cpu")
