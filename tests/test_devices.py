"""The device rule, on this CPU-only machine: what a GPU would change is faked where it must be."""

import pytest
import torch

from distmeta.config import load_config
from distmeta.devices import (
    CPU,
    CudaTorchError,
    check_cuda_torch,
    cuda_torch_problem,
    resolve_device,
    usable_device,
    worker_device,
)
from distmeta.errors import ConfigError
from distmeta.experiment import build_experiment, driver_experiment

CUDA0 = torch.device("cuda", 0)


@pytest.fixture
def gpu_seen(monkeypatch):
    """torch says a GPU is here (this machine has none: touching it would raise)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_a_worker_computes_on_the_device_ray_gave_it_unless_the_config_says_cpu():
    assert worker_device("auto", CUDA0) == CUDA0
    assert worker_device("auto", CPU) == CPU
    assert worker_device("cuda", CUDA0) == CUDA0
    assert worker_device("cpu", CUDA0) == CPU


def test_a_worker_without_a_gpu_refuses_train_device_cuda_naming_the_field():
    with pytest.raises(ConfigError, match=r"^train\.device: .*--gpus-per-worker 1"):
        worker_device("cuda", CPU)


def test_cuda_in_one_process_without_a_gpu_is_refused_but_a_checkpoint_falls_back_to_the_cpu():
    with pytest.raises(ConfigError, match="train.device"):
        resolve_device("cuda")
    device, why = usable_device("cuda")
    assert device == CPU and "no GPU" in why
    with pytest.raises(ConfigError, match="^--device: unknown device 'gpu'"):
        resolve_device("gpu", field="--device")


def test_the_driver_checks_a_cuda_config_on_the_cpu_without_initialising_cuda(gpu_seen):
    for device in ("auto", "cuda"):
        experiment = driver_experiment(load_config(None, [f"train.device={device}"]))
        assert experiment.device == CPU
    assert not torch.cuda.is_initialized()


def test_initial_parameters_are_drawn_on_the_cpu_whatever_device_the_experiment_uses(monkeypatch):
    import distmeta.experiment as experiments

    config = load_config(None, ["seed=3"])
    on_cpu = build_experiment(config, CPU, check_data=False).initial_meta_parameters()
    elsewhere = build_experiment(config, torch.device("meta"), check_data=False)  # stands in for a GPU
    drawn_on = []
    real_draw = experiments.initial_parameters

    def recording_draw(model, seed):
        drawn_on.append({p.device.type for p in model.parameters()})
        return real_draw(model, seed)

    monkeypatch.setattr(experiments, "initial_parameters", recording_draw)
    params = elsewhere.initial_meta_parameters()
    assert drawn_on == [{"cpu"}]
    assert {p.device.type for p in params.values()} == {"meta"}
    assert {k: v.shape for k, v in params.items()} == {k: v.shape for k, v in on_cpu.items()}


def test_a_cpu_build_of_torch_is_named_with_how_to_install_a_cuda_one():
    problem = cuda_torch_problem()
    assert torch.version.cuda is None  # this machine's torch is the CPU build
    assert f"torch {torch.__version__} is a CPU-only build" in problem
    assert (
        "pip install -c constraints.txt -c constraints-gpu.txt torch "
        "--extra-index-url https://download.pytorch.org/whl/cu"
    ) in problem
    with pytest.raises(CudaTorchError, match="GPUs were asked for"):
        check_cuda_torch()


def test_a_cuda_build_that_sees_no_gpu_is_named_and_one_that_sees_one_passes(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "(CUDA 13.0) sees no usable GPU" in cuda_torch_problem()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cuda_torch_problem() is None
    check_cuda_torch()
