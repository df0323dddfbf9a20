"""Distributed meta-training on Ray Train: everything in distmeta that imports Ray.

- `collective`: one all-reduce per step of every meta-gradient, flattened into one buffer.
- `worker`: the function each Ray Train worker runs; the math is the engine's own.
- `launcher`: checks on the driver (config, data, resources), then `TorchTrainer.fit()`.
"""
