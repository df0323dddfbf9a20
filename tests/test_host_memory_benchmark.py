"""benchmarks/host_memory.py: its side-by-side table and JSON, from stand-in timings of its
children (a real run takes about 5 minutes; `tests/test_host_memory.py` runs its thread case)."""

import json
import sys

import pytest

from tests.benchmark_scripts import load_benchmark


def test_host_memory_reports_the_median_of_each_settings_rounds_side_by_side(tmp_path, monkeypatch, capsys):
    script = load_benchmark("host_memory")
    engine_speed = load_benchmark("engine_speed")
    ms = {("second", "kept"): [700.0, 720.0], ("second", "default"): [800.0, 900.0]}
    ms |= {("first", "kept"): [500.0, 510.0], ("first", "default"): [600.0, 640.0]}
    calls = []

    def timed_child(command, model, order, variant, timeout):  # the conv4 children, each its own process
        setting = command[command.index("--distmeta-allocator") + 1]
        calls.append((order, setting))
        return {"ms_per_step": ms[order, setting][sum(c == (order, setting) for c in calls) - 1]}

    thread_steps = {"kept": [{"ms_per_step": 30.0, "faults_per_step": 40.0}] * 2}
    thread_steps["default"] = [{"ms_per_step": 40.0, "faults_per_step": 5600.0}] * 2
    monkeypatch.setattr(engine_speed, "run_variant", timed_child)
    monkeypatch.setattr(script, "sinusoid_steps_in_a_thread", lambda setting: thread_steps[setting].pop())
    out = tmp_path / "host_memory.json"
    monkeypatch.setattr(sys, "argv", ["host_memory.py", "--rounds", "2", "--json", str(out)])
    script.main()
    # alternating, so that both settings see the same moments of a shared machine
    assert calls[:4] == [("second", "kept"), ("second", "default"), ("second", "kept"), ("second", "default")]
    report = json.loads(out.read_text())
    assert report["command"] == f"python benchmarks/host_memory.py --rounds 2 --json {out}"
    assert report["median_ms"] == {
        "second": {"kept": 710.0, "default": 850.0},
        "first": {"kept": 505.0, "default": 620.0},
    }
    assert report["sinusoid_in_a_thread"]["median"]["default"] == {"ms_per_step": 40.0, "faults_per_step": 5600.0}
    table = capsys.readouterr().out
    assert "second    710.0ms   850.0ms            1.20" in table


def test_host_memory_refuses_no_rounds(monkeypatch):
    script = load_benchmark("host_memory")
    monkeypatch.setattr(sys, "argv", ["host_memory.py", "--rounds", "0"])
    with pytest.raises(SystemExit):
        script.main()
