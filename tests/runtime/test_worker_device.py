"""`train.device: cpu` keeps a worker on the CPU, and on gloo, even where Ray gave it a GPU."""

import ray.train.torch
import torch

from distmeta.config import load_config
from distmeta.runtime.launcher import torch_config
from distmeta.runtime.worker import worker_device


def test_train_device_cpu_keeps_a_worker_on_cpu_though_ray_gave_it_a_gpu(monkeypatch):
    monkeypatch.setattr(ray.train.torch, "get_device", lambda: torch.device("cuda", 0))
    assert worker_device(load_config(None, ["train.device=cpu"])) == torch.device("cpu")
    assert worker_device(load_config(None, [])) == torch.device("cuda", 0)  # auto: the GPU Ray assigned


def test_cpu_workers_all_reduce_with_gloo_whatever_resources_they_hold():
    assert torch_config(load_config(None, ["train.device=cpu"])).backend == "gloo"
    assert torch_config(load_config(None, [])).backend is None  # Ray's choice: nccl with a GPU, else gloo
