"""train.compile: a rank's meta-gradient under torch.compile equals the uncompiled one, compiles
once, and `auto` compiles only where the run is long enough to pay the compile back.

The equality tests use torch.compile's `aot_eager` backend: the same graph capture (dynamo) and
autograd tracing as the default inductor, without its C++ build, which takes minutes here."""

from __future__ import annotations

import pytest
import torch

from distmeta import compilation
from distmeta.compilation import CompileGain, MetaGradientRunner
from distmeta.config import load_config
from distmeta.errors import ConfigError
from distmeta.execution import batch_meta_gradient
from distmeta.experiment import build_experiment
from distmeta.training.trainer import meta_batch

TINY = ["task.shots=3", "task.query_shots=3", "train.meta_batch_size=4", "model.hidden_sizes=[8]"]


def tiny(algorithm: str, strategy: str):
    experiment = build_experiment(
        load_config(None, [*TINY, f"algorithm.name={algorithm}", f"train.vectorize={strategy}"])
    )
    return experiment, experiment.initial_meta_parameters()


def runner(experiment, mode: str, printed: list[str], backend="aot_eager") -> MetaGradientRunner:
    return MetaGradientRunner(
        experiment.algorithm,
        experiment.strategy,
        None,
        mode,
        ("mlp", experiment.strategy, "cpu"),
        printed.append,
        backend=backend,
    )


@pytest.mark.parametrize("algorithm, strategy", [("maml", "vmap"), ("fomaml", "loop")])
def test_the_compiled_meta_gradient_equals_the_uncompiled_one_and_compiles_once_without_graph_breaks(
    algorithm, strategy
):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    experiment, params = tiny(algorithm, strategy)
    printed: list[str] = []
    compiled = runner(experiment, "on", printed)
    for step in range(3):
        batch = meta_batch(experiment, step)
        got = compiled(params, batch)
        if step == 0:
            graphs = counters["stats"]["unique_graphs"]
        expected = batch_meta_gradient(experiment.algorithm, params, batch, strategy)
        for name in params:
            torch.testing.assert_close(got.grad_sum[name], expected.grad_sum[name], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got.losses, expected.losses)
        torch.testing.assert_close(got.scores, expected.scores)
    assert counters["stats"]["unique_graphs"] == graphs
    # a graph break splits the step into graphs run by Python in between: it cost the compiled
    # sinusoid step its whole gain once (an assignment expression in a comprehension)
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert len(printed) == 1 and printed[0].startswith("compile: on (on: set in the config); compiled in ")


def test_auto_compiles_a_measured_setting_only_when_the_steps_left_pay_the_compile_back(monkeypatch):
    experiment, params = tiny("maml", "vmap")
    batches = [meta_batch(experiment, step) for step in range(compilation.PROBE_STEPS + 2)]
    monkeypatch.setattr(compilation, "MEASURED", {("mlp", "vmap", "cpu"): CompileGain(3600.0, 2.0, "made up")})
    printed: list[str] = []
    short = runner(experiment, "auto", printed)
    short.plan(1000)
    for batch in batches:
        short(params, batch)
    assert short.compiled is None and printed[0].startswith("compile: off (auto: ")
    assert "pays back after" in printed[0] and f"{1000 - compilation.PROBE_STEPS - 1} left" in printed[0]

    monkeypatch.setattr(compilation, "MEASURED", {("mlp", "vmap", "cpu"): CompileGain(1e-6, 2.0, "made up")})
    printed.clear()
    long = runner(experiment, "auto", printed)
    long.plan(1000)
    for batch in batches:
        long(params, batch)
    assert long.compiled is not None and printed[0].startswith("compile: on (auto: ")

    monkeypatch.setattr(compilation, "MEASURED", {})
    printed.clear()
    unmeasured = runner(experiment, "auto", printed)
    unmeasured.plan(10**9)
    for batch in batches:
        unmeasured(params, batch)
    assert unmeasured.compiled is None and printed == ["compile: off (auto: no measured gain for mlp vmap on cpu)"]

    monkeypatch.setattr(compilation, "MEASURED", {("mlp", "vmap", "cpu"): CompileGain(1e-6, 2.0, "made up")})
    printed.clear()
    unplanned = runner(experiment, "auto", printed)  # outside a training loop: no steps to pay anything back
    for batch in batches:
        unplanned(params, batch)
    assert unplanned.compiled is None and printed == [
        "compile: off (auto: no planned number of steps to pay the compile back)"
    ]


def test_a_compile_that_fails_stops_an_on_run_naming_the_setting_and_an_auto_run_goes_on_uncompiled(monkeypatch):
    def broken_backend(graph, example_inputs):
        raise RuntimeError("no compiler here")

    torch._dynamo.reset()
    experiment, params = tiny("maml", "vmap")
    batch = meta_batch(experiment, 0)
    with pytest.raises(ConfigError, match="train.compile: torch.compile failed on this setting"):
        runner(experiment, "on", [], backend=broken_backend)(params, batch)

    torch._dynamo.reset()
    monkeypatch.setattr(compilation, "MEASURED", {("mlp", "vmap", "cpu"): CompileGain(1e-6, 2.0, "made up")})
    printed: list[str] = []
    auto = runner(experiment, "auto", printed, backend=broken_backend)
    auto.plan(1000)
    for step in range(compilation.PROBE_STEPS + 3):
        result = auto(params, meta_batch(experiment, step))
    expected = batch_meta_gradient(experiment.algorithm, params, meta_batch(experiment, step), "vmap")
    torch.testing.assert_close(result.grad_sum, expected.grad_sum)
    assert printed[-1] == "compile: off (auto: torch.compile failed, BackendCompilerFailed; running uncompiled)"


def test_an_unknown_compile_mode_is_refused_naming_the_field_and_yaml_on_off_mean_on_off(tmp_path):
    with pytest.raises(ConfigError, match="train.compile"):
        load_config(None, ["train.compile=always"])
    assert load_config(None, ["train.compile=off"]).train.compile == "off"
    config_file = tmp_path / "run.yaml"
    config_file.write_text("train:\n  compile: on\n")
    assert load_config(config_file).train.compile == "on"
