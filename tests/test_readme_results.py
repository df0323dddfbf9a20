"""The README's Results section is what benchmarks/readme_results.py writes from benchmarks/results/*.json,
and benchmarks/accuracy.py's suite is well formed (no training here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.benchmark_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str):
    return load_benchmark(name)


def test_the_readme_results_section_is_generated_from_the_json_files():
    done = subprocess.run(
        [sys.executable, "benchmarks/readme_results.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr + done.stdout


def test_a_missing_result_says_not_run_yet_with_its_command_and_no_number(tmp_path):
    readme_results = _module("readme_results")
    section = readme_results.generate(tmp_path)  # an empty results folder
    assert section.startswith(readme_results.BEGIN) and section.endswith(readme_results.END)
    assert "not run yet: `python benchmarks/engine_speed.py`" in section
    assert "not run yet: `python benchmarks/scaling.py`" in section
    assert "not run yet: `python benchmarks/accuracy.py --only omniglot/protonet/5w1s`" in section
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows and not any("+-" in row or " ms" in row or "tasks/s" in row for row in rows)
    assert sum(readme_results.NOT_RUN in row for row in rows) >= 2 + 17


def test_a_result_file_gives_its_row(tmp_path):
    readme_results = _module("readme_results")
    (tmp_path / "accuracy").mkdir()
    record = {
        "experiment": "omniglot/protonet/5w1s",
        "steps": 123,
        "train_wall_time_s": 75.0,
        "eval_wall_time_s": 6.0,
        "metric": "accuracy",
        "test_mean": 0.9512,
        "ci95": 0.0034,
        "tasks": 600,
        "inner_steps": 0,
        "load_average": {"start": [1.0, 1.0, 1.0], "end": [2.5, 2.0, 1.0]},
        "machine": {"cpu_count": 2, "processor": "Some CPU", "torch": "9.9", "gpu": None},
    }
    (tmp_path / "accuracy" / "omniglot_protonet_5w1s.json").write_text(
        json.dumps({**record, "task_stream": "philox-per-meta-batch"})
    )
    section = readme_results.generate(tmp_path)
    assert "| `omniglot/protonet/5w1s` | 123 | 1 min 15 s | 6 s | 95.12% +- 0.34% | 0 | 98.8% | 1.0 -> 2.5 |" in section
    assert "Measured on 2-core CPU (Some CPU), torch 9.9" in section


def test_the_proto_maml_comparison_names_each_gap_the_target_ordering_misses_in_each_setting(tmp_path):
    readme_results = _module("readme_results")
    (tmp_path / "accuracy").mkdir()
    for name, mean in (("protomaml", 0.975), ("protonet", 0.970), ("maml", 0.950)):
        record = {"test_mean": mean, "ci95": 0.004, "steps": 100}
        (tmp_path / "accuracy" / f"omniglot_{name}_5w1s.json").write_text(json.dumps(record))
    assert readme_results._protomaml_ordering(tmp_path, "20w1s") is None  # that setting has no results
    sentence = readme_results._protomaml_ordering(tmp_path, "5w1s")
    assert sentence.startswith("At 5-way 1-shot: ")
    assert "first-order Proto-MAML 97.50% +- 0.40% (100 steps), ProtoNets 97.00% +- 0.40%" in sentence
    assert "is missed: Proto-MAML over ProtoNets by +0.50 points (each should be at least +1)" in sentence
    assert "ProtoNets over MAML" not in sentence
    (tmp_path / "accuracy" / "omniglot_protomaml_5w1s.json").write_text(
        json.dumps({"test_mean": 0.985, "ci95": 0.004, "steps": 100})
    )
    assert "is met." in readme_results._protomaml_ordering(tmp_path, "5w1s")
    (tmp_path / "accuracy" / "omniglot_maml_5w1s.json").unlink()
    assert readme_results._protomaml_ordering(tmp_path, "5w1s") is None  # no sentence until all three have run


def test_a_result_drawn_from_the_earlier_task_stream_is_marked_so(tmp_path):
    readme_results = _module("readme_results")
    (tmp_path / "accuracy").mkdir()
    record = {
        "experiment": "omniglot/protonet/5w1s",
        "steps": 123,
        "train_wall_time_s": 75.0,
        "eval_wall_time_s": 6.0,
        "metric": "accuracy",
        "test_mean": 0.9512,
        "ci95": 0.0034,
        "tasks": 600,
        "inner_steps": 0,
    }
    for stream in ("generator-per-task", None):  # a file without the field predates the counter-based stream
        written = record if stream is None else {**record, "task_stream": stream}
        (tmp_path / "accuracy" / "omniglot_protonet_5w1s.json").write_text(json.dumps(written))
        section = readme_results.generate(tmp_path)
        assert "| 95.12% +- 0.34% † | 0 |" in section and readme_results.EARLIER_STREAM_NOTE in section


def test_check_fails_when_the_section_was_edited_by_hand(tmp_path):
    readme_results = _module("readme_results")
    readme = tmp_path / "README.md"
    text = (ROOT / "README.md").read_text().replace("Each figure comes from", "Each figure came from")
    readme.write_text(text)
    assert readme_results.main(["--check", "--readme", str(readme)]) == 1
    assert readme_results.main(["--readme", str(readme)]) == 0
    assert readme_results.main(["--check", "--readme", str(readme)]) == 0


def test_the_suite_names_every_experiment_once_with_commands_that_parse():
    accuracy = _module("accuracy")
    from distmeta.cli import build_parser
    from distmeta.config import load_config

    experiments = accuracy.load_suite()
    names = [e.name for e in experiments]
    assert len(names) == len(set(names)) == 1 + 8 * 3  # sinusoid, then 8 algorithms x 3 Omniglot settings
    for experiment in experiments:
        for argv in [experiment.train_argv(), *(experiment.eval_argv(k) for k in experiment.inner_steps)]:
            build_parser().parse_args(argv)
        args = build_parser().parse_args(experiment.train_argv())
        config = load_config(ROOT / args.config, args.overrides)  # valid, steps included
        assert config.train.steps == experiment.steps > 0
    protonet = next(e for e in experiments if e.name == "omniglot/protonet/20w1s")
    assert "task.ways=60" in protonet.train_set and protonet.eval_set == ["task.ways=20"]
    assert accuracy.select(experiments, "omniglot/fomaml/*") == [
        e for e in experiments if e.name.startswith("omniglot/fomaml/")
    ]
    with pytest.raises(SystemExit):
        accuracy.select(experiments, "omniglot/nothing")


def test_omniglot_experiments_are_skipped_with_a_reason_without_the_data():
    accuracy = _module("accuracy")
    experiment = next(e for e in accuracy.load_suite() if e.name == "omniglot/protonet/5w1s")
    experiment.data = "../no-such-folder/omniglot"
    assert "missing" in experiment.skip_reason()


def test_an_algorithm_can_override_its_recipe_for_one_setting_only():
    accuracy = _module("accuracy")
    reptile = {e.name: e for e in accuracy.load_suite() if e.name.startswith("omniglot/reptile/")}
    assert "algorithm.inner_batch_size=20" in reptile["omniglot/reptile/20w1s"].train_set
    assert "algorithm.inner_batch_size=10" not in reptile["omniglot/reptile/20w1s"].train_set
    assert "algorithm.inner_batch_size=10" in reptile["omniglot/reptile/5w1s"].train_set


def test_a_per_setting_override_for_a_setting_the_suite_lacks_is_refused_naming_it(tmp_path):
    accuracy = _module("accuracy")
    suite = yaml.safe_load(accuracy.SUITE.read_text())
    suite["omniglot"]["algorithms"]["reptile"]["set_by_setting"] = {"20w1": ["algorithm.inner_steps=10"]}
    path = tmp_path / "accuracy.yaml"
    path.write_text(yaml.safe_dump(suite))
    with pytest.raises(SystemExit, match=r"reptile\.set_by_setting names settings \['20w1'\]"):
        accuracy.load_suite(path)


def write_alfa_and_maml(results, setting: str, alfa: float, maml: float, ci95: float) -> None:
    """Suite results of ALFA and MAML in `setting` with these test accuracies and intervals."""
    (results / "accuracy").mkdir()
    for name, mean in (("alfa", alfa), ("maml", maml)):
        record = {"test_mean": mean, "ci95": ci95, "steps": 100, "train_wall_time_s": 600.0}
        (results / "accuracy" / f"omniglot_{name}_{setting}.json").write_text(json.dumps(record))


def test_the_alfa_comparison_is_stated_for_each_setting_both_have_run_in(tmp_path):
    readme_results = _module("readme_results")
    write_alfa_and_maml(tmp_path, "20w1s", alfa=0.870, maml=0.880, ci95=0.004)
    assert readme_results._alfa_against_maml(tmp_path, "5w1s") is None
    sentence = readme_results._alfa_against_maml(tmp_path, "20w1s")
    assert sentence.startswith("ALFA at 20-way 1-shot (second order")
    assert "ALFA >= MAML is missed by 1.00 points;" in sentence


def test_an_alfa_comparison_within_the_intervals_says_there_is_no_clear_difference(tmp_path):
    readme_results = _module("readme_results")
    write_alfa_and_maml(tmp_path, "5w5s", alfa=0.9907, maml=0.9926, ci95=0.002)
    sentence = readme_results._alfa_against_maml(tmp_path, "5w5s")
    assert "missed by 0.19 points (the two 95% intervals overlap: no clear difference);" in sentence
