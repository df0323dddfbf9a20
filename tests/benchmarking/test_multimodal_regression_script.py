"""benchmarks/multimodal_regression.py: runs on parts of the mode counts or methods merge into one
record (`--merge`), and the README table marks what a record does not hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.benchmark_scripts import load_benchmark


def script():
    return load_benchmark("multimodal_regression")


def part(modes: str, methods: dict[str, float], inner_lr: float = 0.01, count: str | None = None) -> dict:
    """A results file as a run of the script writes it, with `methods`' test MSEs."""
    conditioning = {"conditioning_std": 0.1, "between_mode_std": 0.05, "conditioning_mean_abs": 0.2}
    results = {
        name: {
            "mse": mse,
            "ci95": 0.1,
            "tasks": 600,
            **({"conditioning": conditioning} if name in ("mmaml", "alfa") else {}),
        }
        for name, mse in methods.items()
    }
    return {
        "command": f"python benchmarks/multimodal_regression.py --modes {modes}",
        "date": "2026-11-26T20:00:00+00:00",
        "machine": {"cpu": "test", "cores": 2},
        "settings": {"steps": 7000, "modes": modes, "inner_lr": inner_lr, "out": f"{modes}.json", "methods": "all"},
        "test_tasks": 600,
        "task_stream": "philox-per-meta-batch",
        "wall_seconds": 100.0,
        "results": {count or modes: {**results, "mode_counts": [300, 300]}},
        "paper": {"source": "paper", "mmaml": {"2": 0.336, "5": 0.868}},
        "budget_note": f"{modes} modes: 7,000 meta-steps",
    }


def write(tmp_path: Path, name: str, record: dict) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(record))
    return path


def test_merging_two_runs_on_other_mode_counts_keeps_both_results_and_each_runs_command(tmp_path):
    bench = script()
    first = write(tmp_path, "a.json", part("2", {"maml": 2.0, "mmaml": 0.7}))
    second = write(tmp_path, "b.json", part("5", {"maml": 2.8, "mmaml": 1.1}))
    out = tmp_path / "merged.json"
    bench.main(["--merge", str(first), str(second), "--out", str(out)])
    record = json.loads(out.read_text())
    assert list(record["results"]) == ["2", "5"]
    assert record["results"]["5"]["mmaml"]["mse"] == 1.1
    assert [p["command"] for p in record["parts"]] == [
        "python benchmarks/multimodal_regression.py --modes 2",
        "python benchmarks/multimodal_regression.py --modes 5",
    ]
    assert "--merge" in record["command"] and record["wall_seconds"] == 200.0
    assert "mmaml | 0.700 +- 0.100 (0.336)" in bench.markdown_table(record)


def test_merging_runs_of_other_methods_on_one_mode_count_joins_their_methods(tmp_path):
    bench = script()
    first = write(tmp_path, "a.json", part("2", {"maml": 2.0}))
    second = write(tmp_path, "b.json", part("2", {"mmaml": 0.7}))
    record = bench.merged_record(
        [json.loads(first.read_text()), json.loads(second.read_text())], "cmd", [first, second]
    )
    assert set(record["results"]["2"]) == {"maml", "mmaml", "mode_counts"}
    table = bench.markdown_table(record)
    assert "| maml | 2.000 +- 0.100 (-) |\n| mmaml | 0.700 +- 0.100 (0.336) |\n\n" in table


def test_the_table_marks_a_method_one_mode_count_lacks_and_leaves_out_methods_never_run(tmp_path):
    bench = script()
    first = write(tmp_path, "a.json", part("2", {"maml": 2.0, "mmaml": 0.7}))
    second = write(tmp_path, "b.json", part("5", {"mmaml": 1.1}))
    record = bench.merged_record(
        [json.loads(first.read_text()), json.loads(second.read_text())], "cmd", [first, second]
    )
    rows = [line.split(" | ")[0] for line in bench.markdown_table(record).splitlines() if line.startswith("| ")]
    assert rows == ["| method", "| maml", "| mmaml"]
    assert "| maml | 2.000 +- 0.100 (-) | not run (-) |" in bench.markdown_table(record)


def test_merging_runs_of_other_settings_is_refused_naming_the_setting(tmp_path):
    bench = script()
    first = write(tmp_path, "a.json", part("2", {"maml": 2.0}))
    second = write(tmp_path, "b.json", part("5", {"maml": 2.8}, inner_lr=0.001))
    with pytest.raises(SystemExit, match="b.json was run with other settings.*inner_lr"):
        bench.main(["--merge", str(first), str(second), "--out", str(tmp_path / "merged.json")])


def test_merging_the_same_result_twice_is_refused(tmp_path):
    bench = script()
    first = write(tmp_path, "a.json", part("2", {"maml": 2.0}))
    again = write(tmp_path, "b.json", part("2", {"maml": 2.1}))
    with pytest.raises(SystemExit, match="2 modes / maml again"):
        bench.main(["--merge", str(first), str(again), "--out", str(tmp_path / "merged.json")])


def test_an_unknown_method_is_refused_naming_the_flag():
    with pytest.raises(SystemExit, match="--methods: \\['protonet'\\]"):
        script().main(["--methods", "maml,protonet", "--out", "/nonexistent/x.json"])


def test_a_tiny_run_records_each_methods_median_worst_task_and_mean_per_mode(tmp_path, monkeypatch):
    bench = script()
    monkeypatch.setattr(bench, "RUNS", tmp_path / "runs")
    out = tmp_path / "tiny.json"
    bench.main(
        ["--steps", "2", "--modes", "2", "--methods", "maml,mmaml", "--hidden", "8", "--meta-grad-clip", "1"]
        + ["--meta-lr-schedule", "cosine", "--out", str(out)]
    )
    record = json.loads(out.read_text())
    mmaml = record["results"]["2"]["mmaml"]
    assert "train.meta_grad_clip=1.0" in mmaml["overrides"] and "train.meta_lr_schedule=cosine" in mmaml["overrides"]
    assert set(mmaml["mse_by_mode"]) == {"sinusoid", "linear"}
    counts = record["results"]["2"]["mode_counts"]
    by_mode = mmaml["mse_by_mode"]
    # the per-mode means weighted by their task counts give back the overall mean
    assert (counts[0] * by_mode["sinusoid"] + counts[1] * by_mode["linear"]) / sum(counts) == pytest.approx(
        mmaml["mse"]
    )
    assert mmaml["median"] <= mmaml["max"] and mmaml["mse"] <= mmaml["max"]
    # the larger sample holds the 600 tasks and 5,400 more
    assert mmaml["tasks"] == 600 and mmaml["large_sample"]["tasks"] == 6000
    assert mmaml["large_sample"]["max"] >= mmaml["max"]
    assert "On 6,000 test tasks (the 600 above and 5,400 more): maml 2 modes" in bench.markdown_table(record)


def test_a_run_trained_to_the_end_is_tested_again_with_the_seconds_its_training_took(tmp_path, monkeypatch):
    bench = script()
    monkeypatch.setattr(bench, "RUNS", tmp_path / "runs")
    command = ["--steps", "2", "--modes", "2", "--methods", "maml", "--hidden", "8"]
    bench.main([*command, "--out", str(tmp_path / "first.json")])
    bench.main([*command, "--out", str(tmp_path / "again.json")])
    first, again = (
        json.loads((tmp_path / f"{name}.json").read_text())["results"]["2"]["maml"] for name in ("first", "again")
    )
    recorded = json.loads((tmp_path / "runs" / "2modes-maml" / "metrics.jsonl").read_text().splitlines()[-1])
    assert again["train_seconds"] == round(recorded["elapsed_s"], 1)
    assert again["mse"] == first["mse"] and again["large_sample"] == first["large_sample"]
    assert again["tested_again"] is True and "tested_again" not in first


def test_the_recorded_command_names_where_the_runs_were(monkeypatch):
    monkeypatch.setenv("DISTMETA_BENCH_RUNS", "runs/elsewhere")
    assert script().command_line(["--steps", "7000"]) == (
        "DISTMETA_BENCH_RUNS=runs/elsewhere python benchmarks/multimodal_regression.py --steps 7000"
    )
