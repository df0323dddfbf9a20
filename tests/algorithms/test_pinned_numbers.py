"""Every algorithm gives the meta-gradients, losses and evaluations recorded before the engine seams.

The numbers in `pinned_numbers.pt` were written by this module's `record()` on the code as it
was before update rules, estimators and the algorithm registry existed (commit 4f6be26):

    .venv/bin/python -m tests.algorithms.test_pinned_numbers

Re-recording is only right when a change is meant to change what an algorithm computes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from distmeta.execution import batch_evaluation, batch_meta_gradient
from tests.conftest import classification_batch, make_algorithm, meta_params_for, regression_batch, tiny_conv4, tiny_mlp

PINNED = Path(__file__).with_name("pinned_numbers.pt")


def _cases():
    """(case name, algorithm, meta-parameters, task batch): each algorithm on both models, and variants."""
    for name in ("maml", "fomaml", "reptile", "anil", "metasgd", "protonet"):
        conv = tiny_conv4(3)
        algorithm = make_algorithm(name, conv, True, 3)
        yield f"{name}/conv4", algorithm, meta_params_for(algorithm, conv), classification_batch(tasks=3, shots=2)
        if name == "protonet":
            mlp = tiny_mlp(4, 3)
            algorithm = make_algorithm(name, mlp, True, 3)
            yield f"{name}/mlp", algorithm, meta_params_for(algorithm, mlp), classification_batch(image=False)
            continue
        mlp = tiny_mlp()
        algorithm = make_algorithm(name, mlp, False, inner_steps=3)
        yield f"{name}/mlp", algorithm, meta_params_for(algorithm, mlp, seed=1), regression_batch(tasks=4)
    for name in ("anil", "metasgd"):
        mlp = tiny_mlp()
        algorithm = make_algorithm(name, mlp, False, first_order=True)
        yield f"{name}/mlp/first-order", algorithm, meta_params_for(algorithm, mlp), regression_batch(tasks=2)
    conv = tiny_conv4(3)
    algorithm = make_algorithm("reptile", conv, True, 3, inner_steps=3, inner_batch_size=3)
    yield "reptile/conv4/minibatches", algorithm, meta_params_for(algorithm, conv), classification_batch(shots=2)


def _numbers(strategy: str) -> dict:
    numbers = {}
    for case, algorithm, params, batch in _cases():
        result = batch_meta_gradient(algorithm, params, batch, strategy)
        losses, scores = batch_evaluation(algorithm, params, batch, 3, strategy)
        numbers[case] = {
            "grad_sum": result.grad_sum,
            "losses": result.losses,
            "scores": result.scores,
            "eval_losses": losses,
            "eval_scores": scores,
        }
    return numbers


def record() -> None:
    torch.save(_numbers("loop"), PINNED)


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_every_algorithm_gives_the_numbers_recorded_before_the_engine_seams(strategy):
    pinned = torch.load(PINNED)
    numbers = _numbers(strategy)
    assert set(numbers) == set(pinned)
    for case, expected in pinned.items():
        actual = numbers[case]
        assert set(actual["grad_sum"]) == set(expected["grad_sum"]), case
        for key, value in expected["grad_sum"].items():
            torch.testing.assert_close(actual["grad_sum"][key], value, rtol=1e-6, atol=1e-9, msg=f"{case}: {key}")
        for field in ("losses", "scores", "eval_losses", "eval_scores"):
            torch.testing.assert_close(actual[field], expected[field], rtol=1e-6, atol=1e-9, msg=f"{case}: {field}")


if __name__ == "__main__":
    record()
