"""`distmeta eval` of a learned optimiser: it and tuned baselines on the same held-out tasks."""

import json

import torch

from distmeta.cli import main
from distmeta.config import load_config
from distmeta.learned_optimizer_runs.comparison import GRID, checkpoints_of, steps_to_reach
from distmeta.training.trainer import train
from tests.learned_optimizer_runs.conftest import TINY


def test_steps_to_reach_a_target_is_the_first_step_whose_mean_loss_is_at_most_it():
    curves = torch.tensor([[4.0, 3.0, 1.0, 0.5], [2.0, 1.0, 1.0, 0.5]])
    assert steps_to_reach(curves, 1.0) == 2 and steps_to_reach(curves, 0.1) is None
    assert checkpoints_of(1000, 100) == [10, 100, 1000] and checkpoints_of(12, 6) == [6, 10, 12]


def test_eval_compares_the_run_with_every_tuned_baseline_and_writes_json_and_png(tmp_path, capsys):
    train(load_config(None, [*TINY, f"train.run_dir={tmp_path / 'run'}"]), print_fn=lambda *_: None, final_eval=False)
    assert main(["eval", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr().out
    record = json.loads((tmp_path / "run" / "eval_quadratic.json").read_text())
    assert (tmp_path / "run" / "eval_quadratic.png").stat().st_size > 0
    assert list(record["results"]) == ["learned lstm", "sgd", "momentum", "rmsprop", "adam"]
    assert record["tasks"] == 2 and record["steps"] == 12 and record["reported_steps"] == [6, 10, 12]
    for name, entry in record["results"].items():
        assert name in printed
        assert len(entry["final_losses"]) == 2 and len(entry["mean_curve"]) == 13
        if name != "learned lstm":
            assert entry["learning_rate"] in GRID and len(entry["tuning_log10"]) == len(GRID)
    # the target is the best tuned baseline's mean loss at the unroll length: that baseline reaches it there
    best = min(entry["mean_curve"][6] for name, entry in record["results"].items() if name != "learned lstm")
    assert record["target_loss"] == best
    assert min(entry["steps_to_target"] or 99 for entry in record["results"].values()) <= 6
