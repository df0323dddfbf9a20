"""The benchmark's numbers, from fabricated measured times: no Ray, no clock."""

import json

import pytest

from distmeta.benchmarking.report import (
    CountRun,
    bench_json,
    bench_table,
    merge_rounds,
    percentile,
    summarize,
    with_efficiency,
    write_plot,
)
from distmeta.benchmarking.timing import PHASES


def step(total: float, **phases: float) -> dict[str, float]:
    """One rank's times of one step: the named phases, the rest of `total` in outer_backward."""
    times = {name: phases.get(name, 0.0) for name in PHASES}
    times["outer_backward"] = total - sum(times.values())
    return {**times, "step": total}


def test_percentiles_interpolate_between_order_statistics():
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 90) == pytest.approx(4.6)
    assert percentile([7.0], 90) == 7.0


def test_throughput_and_efficiency_come_from_the_measured_wall_times():
    one = CountRun(1, 10, [[step(0.1), step(0.1), step(0.1), step(0.1)]])
    # the slowest rank's clock is the step's: 0.125 s per step with 2 workers
    two = CountRun(2, 20, [[step(0.125, all_reduce=0.025)] * 4, [step(0.120, sync_wait=0.005)] * 4])
    summaries, note = with_efficiency([summarize(two), summarize(one)])
    assert [s.workers for s in summaries] == [1, 2]
    first, second = summaries
    assert first.wall_s == pytest.approx(0.4) and second.wall_s == pytest.approx(0.5)
    assert first.tasks_per_s == pytest.approx(100.0) and second.tasks_per_s == pytest.approx(160.0)
    assert first.meta_steps_per_s == pytest.approx(10.0) and second.meta_steps_per_s == pytest.approx(8.0)
    assert first.efficiency == pytest.approx(1.0) and second.efficiency == pytest.approx(160 / (2 * 100))
    assert second.per_worker_batch == 10 and second.global_batch == 20 and second.steps == 4
    assert "relative to 1 worker" in note
    # phases: the mean over ranks; shares: of the mean step time, adding up to 1
    assert second.phases["all_reduce"].median_ms == pytest.approx(12.5)
    assert second.phases["sync_wait"].p90_ms == pytest.approx(2.5)
    assert second.phases["all_reduce"].share == pytest.approx(0.0125 / 0.1225)
    assert sum(p.share for p in second.phases.values()) == pytest.approx(1.0)
    assert second.step_ms == pytest.approx({"median_ms": 125.0, "p90_ms": 125.0})


def test_without_one_worker_efficiency_is_relative_to_the_smallest_count_and_says_so():
    two = CountRun(2, 20, [[step(0.1)] * 3] * 2)
    four = CountRun(4, 40, [[step(0.125)] * 3] * 4)
    summaries, note = with_efficiency([summarize(four), summarize(two)])
    assert summaries[1].efficiency == pytest.approx((40 / 0.125) / (2 * 20 / 0.1))
    assert "relative to 2 workers (1 worker was not measured)" in note


def test_strong_scaling_shares_uneven_batches_and_reports_the_mean_share():
    summary = summarize(CountRun(2, 25, [[step(0.1)] * 2] * 2))
    assert summary.per_worker_batch == 12.5 and summary.tasks_per_s == pytest.approx(250.0)


def test_the_json_table_and_plot_carry_every_field(tmp_path):
    summaries, note = with_efficiency(
        [
            summarize(CountRun(1, 10, [[step(0.1, sampling=0.01)] * 3])),
            summarize(CountRun(2, 20, [[step(0.12)] * 3] * 2)),
        ]
    )
    report = json.loads(json.dumps(bench_json({"scaling": "weak"}, {"cpu_count": 2}, summaries, note)))
    assert {"request", "machine", "measurement", "efficiency", "results"} <= set(report)
    result = report["results"][1]
    assert {
        "workers",
        "per_worker_batch",
        "global_batch",
        "steps",
        "wall_s",
        "tasks_per_s",
        "meta_steps_per_s",
        "efficiency",
        "phases",
        "raw",
    } <= set(result)
    assert set(result["phases"]) == set(PHASES)
    assert set(result["phases"]["sampling"]) == {"median_ms", "p90_ms", "share"}
    assert len(result["raw"]["step_s"]) == 3 and len(result["raw"]["ranks"]) == 2
    assert "forward-only pass" in report["measurement"] and "excluded" in report["measurement"]
    table = bench_table(summaries)
    assert "83.3%" in table and "all-reduce" in table and "10.0 / 10.0 (10.0%)" in table
    write_plot(tmp_path / "scaling.png", summaries, "test")
    assert (tmp_path / "scaling.png").stat().st_size > 0


def test_rounds_of_one_count_pool_their_steps_and_keep_each_rounds_throughput():
    first = CountRun(2, 20, [[step(0.1)] * 2, [step(0.1)] * 2])
    second = CountRun(2, 20, [[step(0.2)] * 3, [step(0.2)] * 3])
    pooled = summarize(merge_rounds([first, second]))
    assert pooled.steps == 5 and pooled.wall_s == pytest.approx(0.8)
    assert pooled.tasks_per_s == pytest.approx(20 * 5 / 0.8)
    assert pooled.tasks_per_s_by_round == pytest.approx([200.0, 100.0])
