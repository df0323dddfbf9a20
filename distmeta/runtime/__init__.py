"""Distributed meta-training on Ray Train: the Ray side of training, which tuning
(`distmeta.tuning`), the throughput bench (`distmeta.benchmarking`) and the job
client (`distmeta.jobs`) build on; they import Ray too.

- `launcher`: checks on the driver (config, data, resources, storage), then `TorchTrainer.fit()`.
- `worker`: the function each Ray Train worker runs; the math is the engine's own.
- `step`: one rank's meta-step (its tasks, the all-reduce, the update); the bench times this same step.
- `collective`: one all-reduce per step of every meta-gradient, flattened into one buffer.
- `agreement`: ranks agree on a user error before any collective, so that none waits for ever.
- `worker_errors`: a worker's user error reaches the driver with its type and fields.
- `recovery`: restarts after a lost worker or node, bounded by `--scale-timeout`; the error when they stop.
- `storage`: the layout of a run folder, and finding its newest whole checkpoint.
- `follow`: the driver prints rank 0's metrics as they arrive.
"""
