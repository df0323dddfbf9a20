"""learn2learn's and higher's MAML meta-gradients equal distmeta's on the same tasks and weights,
as benchmarks/engine_speed.py computes them (skipped where `bash benchmarks/install_baselines.sh`
has not installed them: they are never dependencies of distmeta)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from distmeta.execution import batch_meta_gradient
from tests.benchmark_scripts import load_benchmark


def engine_speed():
    return load_benchmark("engine_speed")


@pytest.mark.parametrize("library", ["learn2learn", "higher"])
@pytest.mark.parametrize("first_order", [False, True])
def test_a_baseline_library_gives_distmetas_sinusoid_maml_meta_gradient(library, first_order):
    if importlib.util.find_spec(library) is None:
        pytest.skip(
            f"{library} is not installed here (bash benchmarks/install_baselines.sh installs it into .venv-baselines)"
        )
    bench = engine_speed()
    experiment, batch, _ = bench.build("sine", first_order)
    params = experiment.initial_meta_parameters()
    gradient, parameters, how = bench.meta_gradient_function(library, experiment, batch, params)
    if library == "higher" and first_order:
        assert gradient is None and "first-order" in how
        return
    expected = batch_meta_gradient(experiment.algorithm, params, batch, "vmap").grad_sum
    assert bench.relative_difference(gradient(), expected) < 1e-5
    assert set(parameters) == set(expected)


@pytest.mark.parametrize("first_order", [False, True])
def test_the_baselines_conv4_in_pytorchs_own_layers_gives_distmetas_maml_meta_gradient(first_order):
    from types import SimpleNamespace

    from distmeta.reference import maml_batch_gradient
    from tests.conftest import classification_batch, make_algorithm, meta_params_for, tiny_conv4

    bench = engine_speed()
    model = tiny_conv4(3)
    algorithm = make_algorithm("maml", model, True, 3, inner_steps=1, first_order=first_order)
    params = meta_params_for(algorithm, model)
    batch = classification_batch(tasks=2, shots=2)
    standard = bench.baseline_model(SimpleNamespace(model=model), params)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in standard.modules())
    got = maml_batch_gradient(standard, params, batch, algorithm.inner_lr, 1, first_order, True)
    expected = batch_meta_gradient(algorithm, params, batch, "loop").grad_sum
    assert bench.relative_difference(got, expected) < 1e-10
