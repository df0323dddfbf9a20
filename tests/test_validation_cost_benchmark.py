"""benchmarks/validation_cost.py: a validation's cost read from a run's metrics.jsonl."""

import json

import pytest

from tests.benchmark_scripts import load_benchmark


def write_run(folder, lines: list[dict]):
    folder.mkdir()
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return folder


def test_a_validation_costs_its_interval_less_the_median_interval_without_one(tmp_path):
    script = load_benchmark("validation_cost")
    run = write_run(
        tmp_path / "run",
        [
            {"step": 10, "elapsed_s": 1.0},
            {"step": 20, "elapsed_s": 2.0},
            {"event": "resumed", "from_step": 20},  # not a log interval
            {"step": 30, "elapsed_s": 3.2},
            {"step": 40, "elapsed_s": 6.2, "val_accuracy": 0.9, "val_accuracy_ci95": 0.01},
            {"step": 50, "elapsed_s": 7.2},
            {"step": 60, "elapsed_s": 10.7, "val_accuracy": 0.9, "val_accuracy_ci95": 0.01},
        ],
    )
    row = script.validation_cost(run)
    assert row["steps_per_interval"] == 10 and row["plain_intervals"] == 3
    assert row["interval_s"] == pytest.approx(1.0)  # the median of 1.0, 1.2 and 1.0
    assert row["validation_s_each"] == pytest.approx([2.0, 2.5])
    assert row["validation_s"] == pytest.approx(2.25) and row["loop_s"] == 10.7


def test_the_table_and_json_name_each_run_and_the_command(tmp_path, capsys):
    script = load_benchmark("validation_cost")
    lines = [{"step": 10 * i, "elapsed_s": float(i) + (1.0 if i % 2 == 0 else 0.0)} for i in range(1, 6)]
    for line in lines[1::2]:
        line["val_loss"] = 0.5
    run = write_run(tmp_path / "run", lines)
    out = tmp_path / "cost.json"
    assert script.main([str(run), "--json", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["command"] == f"python benchmarks/validation_cost.py {run} --json {out}"
    assert [row["run"] for row in written["runs"]] == [str(run)]
    assert str(run)[-40:] in capsys.readouterr().out


def test_a_folder_that_is_not_a_run_or_never_validated_is_named(tmp_path):
    script = load_benchmark("validation_cost")
    with pytest.raises(SystemExit, match="no metrics.jsonl"):
        script.validation_cost(tmp_path)
    run = write_run(tmp_path / "unvalidated", [{"step": 10, "elapsed_s": 1.0}, {"step": 20, "elapsed_s": 2.0}])
    with pytest.raises(SystemExit, match="metrics.jsonl: needs log intervals both with and without a validation"):
        script.validation_cost(run)
