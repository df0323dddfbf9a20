"""benchmarks/cpu_kernels.py: what it writes, in a real run (about 6 s)."""

import json
import subprocess
import sys
from pathlib import Path

from tests.benchmark_scripts import BENCHMARKS


def test_cpu_kernels_times_every_kernel_and_finds_distmetas_batch_norm_near_float64(tmp_path):
    out = tmp_path / "cpu_kernels.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "cpu_kernels.py"), "--json", str(out)],
        capture_output=True,
        text=True,
        cwd=Path(BENCHMARKS).parent,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(out.read_text())
    assert record["command"] == f"python benchmarks/cpu_kernels.py --json {out}"
    assert len(record["kernel_ms"]) == 9 and all(ms > 0 for ms in record["kernel_ms"].values())
    errors = record["meta_gradient_rel_diff"]
    assert set(errors) == {"NCHW, F.batch_norm", "channels-last, F.batch_norm", "channels-last, cpu_batch_norm"}
    # what Conv4 runs on a CPU: a float32 second-order meta-gradient within float32 rounding of float64
    assert errors["channels-last, cpu_batch_norm"] < 1e-5
    assert "wrote" in done.stdout and "cpu_batch_norm" in done.stdout
