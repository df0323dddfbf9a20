"""One torch thread for these tests (`one_torch_thread` in tests/conftest.py): their tensors are tiny."""

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    yield


TINY = [
    "task.name=quadratic",
    "algorithm.name=learned_optimizer",
    "task.quadratic.dimensions=3",
    "task.quadratic.functions=4",
    "algorithm.learned_optimizer.unroll_length=6",
    "algorithm.learned_optimizer.truncation_length=2",
    "algorithm.learned_optimizer.eval_tasks=2",
    "algorithm.learned_optimizer.tuning_tasks=2",
    "algorithm.learned_optimizer.eval_steps=12",
    "train.steps=4",
    "train.meta_batch_size=3",
    "train.meta_lr=0.01",
    "train.log_every=2",
    "train.val_every=0",
    "train.checkpoint_every=2",
]
"""A learned LSTM on 3-d quadratics of 4 functions: 3 unrolls of 6 steps in truncations of 2."""
