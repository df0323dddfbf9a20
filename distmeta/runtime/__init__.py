"""Distributed meta-training on Ray Train: the Ray side of training and of the knowledge base.

Outside this package, Ray is imported only by what builds on it: tuning (`distmeta.tuning.search`),
the throughput bench (`distmeta.benchmarking.scaling`, `.result_box`) and the job client
(`distmeta.jobs`). The engine (tasks, models, algorithms, training) never imports Ray.

- `launcher`: checks on the driver (config, data, resources, storage), then `TorchTrainer.fit()`.
- `worker`: the function each Ray Train worker runs; the math is the engine's own.
  `optimizer_worker`: the same for a learned optimiser's meta-training.
- `step`: one rank's meta-step (its tasks, the all-reduce, the update); the bench times this same step.
- `collective`: one all-reduce per step of every meta-gradient, flattened into one buffer.
- `agreement`: ranks agree on a user error before any collective, so that none waits for ever.
- `worker_errors`: a worker's user error reaches the driver with its type and fields.
- `recovery`: restarts after a lost worker or node, bounded by `--scale-timeout`; the error when they stop.
- `storage`: the layout of a run folder, and finding its newest whole checkpoint.
- `follow`: the driver prints rank 0's metrics as they arrive.
- `capacity`: what a cluster's nodes hold, now and once grown (arithmetic, no Ray);
  `autoscaling` reads that from a running cluster and asks its autoscaler for more.
- `cuda_probe`: before a GPU run, whether the torch on the GPU nodes sees a GPU.
- `knowledge`: the knowledge base's index served by an actor, and builds shared among Ray tasks.
"""
