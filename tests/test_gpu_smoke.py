"""benchmarks/gpu_smoke.py on this CPU-only machine: it says it checked nothing, and its checks
themselves run (rehearsed with the CPU in the GPU's place)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_smoke.py"


def smoke(*args, timeout=600):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_without_a_gpu_it_exits_77_saying_nothing_was_checked_and_writes_nothing(tmp_path):
    done = smoke("--json", str(tmp_path / "smoke.json"))
    assert done.returncode == 77, done.stderr
    assert done.stdout.startswith("no GPU: nothing checked (torch ")
    assert not (tmp_path / "smoke.json").exists()


def test_an_unknown_check_is_refused_naming_the_known_ones(tmp_path):
    done = smoke("--only", "cuda_build,warp_drive", "--json", str(tmp_path / "smoke.json"))
    assert done.returncode == 2 and "unknown checks ['warp_drive']" in done.stderr and "determinism" in done.stderr


@pytest.mark.slow
def test_the_in_process_checks_pass_when_rehearsed_on_the_cpu(tmp_path):
    checks = ["cuda_build", "meta_gradients", "all_reduce", "checkpoint_on_cpu", "determinism"]
    done = smoke("--rehearse-on-cpu", "--only", ",".join(checks), "--json", str(tmp_path / "smoke.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads((tmp_path / "smoke.json").read_text())
    assert record["rehearsal_on_cpu"] and record["passed"]
    assert [check["check"] for check in record["checks"]] == checks
    by_name = {check["check"]: check for check in record["checks"]}
    gradients = by_name["meta_gradients"]
    assert gradients["largest_float64"] <= 1e-9
    assert len(gradients["tf32_off"]) == 10 + 7  # conv4: all 10; mlp: all but protonet, protomaml and leo
    # On the CPU, the float32 "device" loop is the float32 CPU loop: the same distance from float64.
    assert all(row["loop_float32"] == row["cpu_loop_float32"] for row in gradients["tf32_off"])
    assert by_name["checkpoint_on_cpu"]["on_cpu_only"] and by_name["determinism"]["deterministic_bit_identical"]
