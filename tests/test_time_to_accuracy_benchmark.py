"""benchmarks/time_to_accuracy.py builds commands distmeta accepts and reports its rows honestly, and the
README's table is what benchmarks/readme_time_to_accuracy.py writes from its JSON (nothing is trained here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from distmeta.config import load_config
from tests.benchmark_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str):
    return load_benchmark(name)


def _overrides(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv) if word == "--set"]


@pytest.mark.parametrize("method", ["protonet", "fomaml", "anil", "maml"])
def test_every_methods_command_is_a_valid_5_way_1_shot_run_that_stops_at_the_target_or_the_cap(method):
    benchmark = _module("time_to_accuracy")
    argv = benchmark.train_argv(method, 2, 0.95, 10)
    assert argv[:2] == ["train", benchmark.CONFIG] and "--workers" in argv and "--no-eval" in argv
    roots = ["task.omniglot.roots=[]", "task.omniglot.synthetic=true"]  # the data need not be here
    config = load_config(ROOT / benchmark.CONFIG, [*_overrides(argv), *roots])
    assert (config.task.ways, config.task.shots, config.algorithm.name) == (5, 1, method)
    assert config.train.stop_at_accuracy == 0.95 and config.train.time_limit_minutes == 10
    assert config.train.val_every and config.train.val_tasks >= 200 and config.train.meta_batch_size % 2 == 0


def _row(crossing: dict | None) -> dict:
    validations = [
        {"step": 50, "elapsed_s": 30.0, "val_accuracy": 0.9, "ci95": 0.01},
        {"step": 100, "elapsed_s": 61.0, "val_accuracy": 0.96, "ci95": 0.01},
    ]
    return {
        "method": "protonet",
        "label": "ProtoNets",
        "workers": 1,
        "target": 0.95,
        "cap_minutes": 0.5,
        "steps": 100,
        "tasks_per_s": 10.0,
        "outside_loop_s": 20.0,
        "validations": validations,
        "best": validations[-1],
        "crossing": crossing,
        "time_to_target_s": 81.0,
        "test": {"mean": 0.97, "ci95": 0.004, "tasks": 600, "inner_steps": 0},
        "load_average": {"start": [2.0, 2.0, 2.0], "end": [3.0, 3.0, 3.0]},
    }


def test_a_crossing_reports_its_time_step_and_test_accuracy_and_a_miss_its_best():
    benchmark = _module("time_to_accuracy")
    crossed = _row({"step": 100, "elapsed_s": 61.0, "val_accuracy": 0.96, "ci95": 0.01})
    assert benchmark.outcome(crossed) == "1 min 21 s (step 100: val 96.00% +- 1.00%)"
    assert benchmark.test_cell(crossed) == "97.00% +- 0.40% (600 tasks, 0 steps)"
    missed = {**_row(None), "test": None, "best": {"step": 50, "val_accuracy": 0.9, "ci95": 0.01}}
    assert benchmark.outcome(missed) == "not reached in 0.5 min (best 90.00% at step 50)"
    assert benchmark.test_cell(missed) == "-"


def test_the_readme_table_is_generated_from_the_json_and_a_missing_file_says_not_run_yet(tmp_path):
    readme = _module("readme_time_to_accuracy")
    assert readme.main(["--check"]) == 0
    section = readme.generate(tmp_path)
    assert section == "\n".join([readme.BEGIN, "not run yet: `python benchmarks/time_to_accuracy.py`", readme.END])


def test_a_row_meta_trained_on_wider_tasks_gives_their_width_next_to_its_rate():
    readme = _module("readme_time_to_accuracy")
    assert readme._tasks_per_s({**_row(None), "settings": ["task.train_ways=20"]}) == "10.0 (20-way)"
    assert readme._tasks_per_s({**_row(None), "settings": ["train.meta_batch_size=8"]}) == "10.0"
