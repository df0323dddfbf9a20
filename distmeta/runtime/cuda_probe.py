"""Before a GPU run: does the torch on the GPU nodes see a GPU? Asked once, of the cluster.

A worker given a GPU by a CPU build of torch fails when Ray Train sets up NCCL,
before any distmeta code runs in it, and Ray Train retries that like a crash. So
the driver asks first: one task holding what one worker holds, on a node where
workers will run, reports `distmeta.devices.cuda_torch_problem()`; a problem
stops the run there, once, naming the torch build and how to install a CUDA one.
(Each worker checks again when it starts: `worker.worker_experiment`.)
"""

from __future__ import annotations

import ray

from distmeta.devices import CudaTorchError, cuda_torch_problem


def check_workers_torch(request, device: str) -> None:
    """Raise CudaTorchError when `request` asks for GPUs that the workers' torch cannot use.

    `request`: a `ClusterRequest`, GPUs per worker decided, on a connected cluster;
    `device`: `train.device` (with "cpu", workers holding a GPU do not use it: nothing to check).
    """
    if not request.gpus_per_worker or device == "cpu":
        return
    probe = ray.remote(num_cpus=request.cpus_per_worker, num_gpus=request.gpus_per_worker, max_retries=0)(
        cuda_torch_problem
    )
    problem = ray.get(probe.remote())
    if problem is not None:
        raise CudaTorchError(f"on the GPU nodes: {problem}")
