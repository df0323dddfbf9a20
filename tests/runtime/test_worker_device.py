"""`train.device: cpu` keeps a worker on the CPU, and on gloo, even where Ray gave it a GPU."""

import torch

from distmeta.config import load_config
from distmeta.devices import worker_device
from distmeta.runtime.launcher import torch_config


def test_train_device_cpu_keeps_a_worker_on_cpu_though_ray_gave_it_a_gpu():
    assert worker_device("cpu", torch.device("cuda", 0)) == torch.device("cpu")
    assert worker_device("auto", torch.device("cuda", 0)) == torch.device("cuda", 0)  # the GPU Ray assigned


def test_cpu_workers_all_reduce_with_gloo_whatever_resources_they_hold():
    assert torch_config(load_config(None, ["train.device=cpu"])).backend == "gloo"
    assert torch_config(load_config(None, [])).backend is None  # Ray's choice: nccl with a GPU, else gloo
