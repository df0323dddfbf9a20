"""`distmeta bench` of a learned optimiser: its throughput in unroll steps, from fabricated times."""

import pytest

from distmeta.benchmarking.report import CountRun, summarize, with_efficiency
from distmeta.benchmarking.scaling import unroll_steps, unroll_steps_line
from distmeta.benchmarking.timing import PHASES
from distmeta.config import load_config


def step(total: float) -> dict[str, float]:
    return {**{name: 0.0 for name in PHASES}, "inner_loop": total, "step": total}


def test_unroll_steps_per_second_are_truncations_per_second_times_their_length():
    config = load_config("benchmarks/configs/quadratic_lstm.yaml")  # truncations of 20 steps
    one = CountRun(1, 2, [[step(0.1)] * 4])
    two = CountRun(2, 4, [[step(0.125)] * 4, [step(0.12)] * 4])
    summaries, _ = with_efficiency([summarize(one), summarize(two)])
    record = unroll_steps(config, summaries)
    assert record["unroll_steps_per_s"] == {"1": pytest.approx(400.0), "2": pytest.approx(640.0)}
    assert record["ratio_to_smallest"] == {"1": pytest.approx(1.0), "2": pytest.approx(1.6)}
    assert "2: 1.60x" in unroll_steps_line(record)
