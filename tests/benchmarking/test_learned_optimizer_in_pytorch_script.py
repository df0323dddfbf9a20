"""benchmarks/learned_optimizer_in_pytorch.py: the learned rules as a torch.optim.Optimizer in a
plain PyTorch loop give the losses of the functional rule the benchmarks evaluate, and a rule that
is not the meta-trained one is caught."""

from __future__ import annotations

import json
import sys

import pytest

from distmeta.learned_optimizers import LearnedOptimizer, make_rule
from distmeta.tasks.digits import DigitsMLPFamily
from tests.benchmark_scripts import load_benchmark

SEED = 12345


@pytest.fixture(scope="module")
def script():
    return load_benchmark("learned_optimizer_in_pytorch")


@pytest.mark.parametrize("rule", ["lstm", "mlp"])
def test_the_pytorch_loop_gives_the_functional_rules_losses(script, rule):
    check = script.reference_check(rule, DigitsMLPFamily("test", hidden=5), SEED, "cpu", adam_rate=0.1)

    assert check["matches_functional"]
    assert check["float64_relative_difference"]["1"] < 1e-12
    assert check["float64_relative_difference"]["10"] < 1e-10


def test_an_optimizer_that_is_not_the_meta_trained_rule_is_caught(script, monkeypatch):
    def slightly_other_rule(name, model, adam_rate):
        meta_params = script.trained_meta_parameters(name)
        return LearnedOptimizer(model.parameters(), make_rule(name), {k: v * 1.001 for k, v in meta_params.items()})

    monkeypatch.setattr(script, "make_optimizer", slightly_other_rule)
    check = script.reference_check("mlp", DigitsMLPFamily("test", hidden=5), SEED, "cpu", adam_rate=0.1)

    assert not check["matches_functional"]


def test_a_run_writes_each_optimisers_losses_and_speed(script, tmp_path, monkeypatch):
    out = tmp_path / "in_pytorch.json"
    arguments = ["--steps", "12", "--hidden", "4", "--optimizers", "mlp", "adam", "--json", str(out)]
    monkeypatch.setattr(sys, "argv", ["learned_optimizer_in_pytorch.py", *arguments])

    script.main()

    report = json.loads(out.read_text())
    rows = {row["optimizer"]: row for row in report["rows"]}
    assert set(rows) == {"mlp", "adam"}
    assert all(row["device"] == "cpu" and row["hidden"] == 4 for row in rows.values())
    assert set(rows["adam"]["losses"]) == {"0", "1", "10", "12"}
    assert rows["adam"]["losses"]["12"] < rows["adam"]["losses"]["0"]
    assert rows["mlp"]["matches_functional"] and "matches_functional" not in rows["adam"]
    assert rows["mlp"]["ms_per_step"] > 0
