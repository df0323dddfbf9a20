"""README's learned-optimiser tables are what benchmarks/readme_learned_optimizers.py writes from
benchmarks/results/learned_optimizer_*.json (nothing is trained here)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.benchmark_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


def _module():
    return load_benchmark("readme_learned_optimizers")


def _entry(mean: float) -> dict:
    return {
        "mean": mean,
        "log10_mean": 0.0 if mean == 1.0 else -1.0,
        "interval": [0.5 * mean, 1.5 * mean],
        "log10_interval": [None, 0.25],
        "diverged": False,
    }


def test_the_readme_tables_are_generated_from_the_json_files():
    assert _module().main(["--check"]) == 0


def test_a_missing_result_says_not_run_yet_with_its_command_and_no_number(tmp_path):
    readme = _module()
    section = readme.generate(tmp_path)
    assert section.startswith(readme.BEGIN) and section.endswith(readme.END)
    assert "not run yet: `python benchmarks/learned_optimizer_quadratic.py`" in section
    assert "not run yet: `python benchmarks/learned_optimizer_quadratic.py --entries uniform`" in section
    assert "not run yet: `python benchmarks/learned_optimizer_digits.py`" in section
    assert "not run yet: `python benchmarks/learned_optimizer_in_pytorch.py`" in section
    assert "not run yet: `python benchmarks/learned_optimizer_quadratic.py --device cuda`" in section
    assert not any(line.startswith("| ") for line in section.splitlines())


def test_a_digits_result_file_gives_its_rows_and_the_targets_as_measured(tmp_path):
    readme = _module()
    settings = {"h20_100": {"hidden": 20, "steps": 100}, "h20_long": {"hidden": 20, "steps": 1000}}
    learned = {
        "kind": "learned",
        "meta_training_seconds": 75.0,
        "h20_100": {"step_100": _entry(0.1)},
        "h20_long": {"step_1000": _entry(0.01)},
    }
    adam = {
        "kind": "baseline",
        "h20_100": {"step_100": _entry(0.2), "learning_rate": 0.03},
        "h20_long": {"step_1000": _entry(0.001), "learning_rate": 0.01},
    }
    report = {
        "command": "python benchmarks/learned_optimizer_digits.py ",
        "problem": "an MLP",
        "seconds": 100.0,
        "settings": settings,
        "meta_training": {"hidden": 20, "steps": 100},
        "test_seeds": [1, 2, 3],
        "results": {"lstm": learned, "adam": adam},
        "targets": {
            "lstm": {
                "beats_adam": {"h20_100": True, "h20_long": False},
                "beats_adam_at_100_and_long": False,
                "no_nan": True,
                "no_divergence": True,
            }
        },
    }
    (tmp_path / "learned_optimizer_digits.json").write_text(json.dumps(report))
    section = readme.generate(tmp_path)
    assert "| lstm | 0.1 (0.05 .. 0.15) | 0.01 (0.005 .. 0.015) | 1 min 15 s |" in section
    assert "| adam | 0.2 (0.1 .. 0.3) [0.03] | 0.001 (0.0005 .. 0.0015) [0.01] | - |" in section
    assert "below tuned Adam at 100 and at 1,000 steps: missed (below it in 1 of 2 columns)" in section
    assert "no NaN in any task: met" in section


def _in_pytorch_row(device: str, hidden: int, optimizer: str, ms: float, matches: bool | None = None) -> dict:
    row = {"device": device, "hidden": hidden, "optimizer": optimizer, "ms_per_step": ms}
    row["losses"] = {"0": 2.0, "100": 0.01, "1000": 0.001}
    return row | ({} if matches is None else {"matches_functional": matches})


def test_the_pytorch_loop_table_puts_each_machine_in_its_columns_and_counts_the_checks(tmp_path):
    readme = _module()
    here = {
        "machine": {"device": "cpu", "cpu_count": 2},
        "command": "python benchmarks/learned_optimizer_in_pytorch.py",
        "steps": 1000,
        "adam_learning_rate": 0.1,
        "rows": [_in_pytorch_row("cpu", 20, "lstm", 2.5, True), _in_pytorch_row("cpu", 20, "adam", 0.4)],
    }
    gpu = here | {
        "machine": {"device": "cuda", "gpu": "NVIDIA H200", "cpu_count": 16},
        "command": "python benchmarks/learned_optimizer_in_pytorch.py --devices cuda",
        "rows": [_in_pytorch_row("cuda", 20, "lstm", 5.0, False), _in_pytorch_row("cuda", 20, "adam", 1.5)],
    }
    (tmp_path / "learned_optimizer_in_pytorch.json").write_text(json.dumps(here))
    (tmp_path / "learned_optimizer_in_pytorch_h200.json").write_text(json.dumps(gpu))
    section = readme.generate(tmp_path)
    assert "| hidden | optimiser | loss, CPU here | loss, H200 | ms/step, CPU here | ms/step, H200 |" in section
    assert "- H200, NVIDIA H200: `python benchmarks/learned_optimizer_in_pytorch.py --devices cuda`" in section
    assert "| 20 | lstm | 0.01 / 0.001 | 0.01 / 0.001 | 2.5 | 5 |" in section
    assert "| 20 | adam | 0.01 / 0.001 | 0.01 / 0.001 | 0.4 | 1.5 |" in section
    assert "within rounding in 1 of 1 checks" in section and "within rounding in 0 of 1 checks" in section


def test_check_fails_when_the_tables_were_edited_by_hand(tmp_path):
    readme = _module()
    path = tmp_path / "README.md"
    path.write_text((ROOT / "README.md").read_text().replace(readme.END, "| lstm | 0.00 |\n" + readme.END))
    assert readme.main(["--check", "--readme", str(path)]) == 1
    assert readme.main(["--readme", str(path)]) == 0
    assert readme.main(["--check", "--readme", str(path)]) == 0
