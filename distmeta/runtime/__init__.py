"""Distributed meta-training on Ray Train: everything in distmeta that imports Ray.

- `launcher`: checks on the driver (config, data, resources, storage), then `TorchTrainer.fit()`.
- `worker`: the function each Ray Train worker runs; the math is the engine's own.
- `step`: one rank's meta-step (its tasks, the all-reduce, the update); the bench times this same step.
- `collective`: one all-reduce per step of every meta-gradient, flattened into one buffer.
- `storage`: the layout of a run folder, and finding its newest whole checkpoint.
- `follow`: the driver prints rank 0's metrics as they arrive.
"""
