"""What a scaling benchmark measured, summed up: numbers per worker count, a table, JSON, a plot.

Everything here is computed from measured times only: a run's throughput is its
global tasks x timed steps / the wall time of those steps, and the scaling
efficiency compares measured throughputs, never an assumed one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from distmeta.benchmarking.timing import PHASES
from distmeta.training.progress import column_table

MEASUREMENT = (
    "Each timed meta-step is the engine's own step (the calls of a Ray worker's step), with "
    "time.perf_counter around each phase (CUDA synchronised at each boundary on a GPU): sampling = meta_batch "
    "(this rank's tasks, to the device); sync_wait = a dist.barrier() before the all-reduce (waiting for the "
    "slowest rank); all_reduce = all_reduce_sum, the one collective of a step; optimizer = check_finite + "
    "apply_meta_gradient + reading the loss back. The engine computes inner loop and outer backward in one "
    "call (compute_meta_gradient), so after each step, outside its clock, the same tasks go once more through "
    "a forward-only pass (the algorithm's query_loss, with the experiment's vmap or loop strategy) from the "
    "step's starting meta-parameters: inner_loop = that pass's time, outer_backward = meta-gradient time - "
    "inner_loop (clipped at 0). That extra pass is excluded from step times and throughput. Per step, "
    "phase times are the mean over ranks and the step time is the slowest rank's wall clock; wall_s is the "
    "sum of the timed steps' times; tasks_per_s = global_batch x steps / wall_s; share = a phase's total "
    "time / the total step time (mean over ranks); shares add up to just under 1, the rest being the few "
    "statements between phases."
)


@dataclass(frozen=True)
class CountRun:
    """What one worker count measured: every rank's phase times of every timed step."""

    workers: int
    global_batch: int
    ranks: list[list[dict[str, float]]]
    """ranks[r][s]: rank r's `StepTimes.to_dict()` of timed step s (seconds)."""
    devices: list[dict] = field(default_factory=list)
    """Each rank's node, host, device and device name."""
    rounds: list[int] = field(default_factory=list)
    """How many timed steps each round contributed, when several rounds were merged."""


def merge_rounds(runs: list[CountRun]) -> CountRun:
    """One worker count's rounds as one run: every rank's steps, round after round.

    Rounds of all worker counts are taken in turn (1, 2, 1, 2, ...), so that a machine
    that speeds up or slows down while the benchmark runs affects every count alike.
    """
    ranks = [sum((run.ranks[rank] for run in runs), []) for rank in range(len(runs[0].ranks))]
    return CountRun(runs[0].workers, runs[0].global_batch, ranks, runs[0].devices, [len(run.ranks[0]) for run in runs])


@dataclass(frozen=True)
class PhaseStats:
    median_ms: float
    p90_ms: float
    share: float
    """This phase's total time over the timed steps / the total step time."""


@dataclass
class CountSummary:
    workers: int
    per_worker_batch: float
    global_batch: int
    steps: int
    wall_s: float
    tasks_per_s: float
    meta_steps_per_s: float
    efficiency: float | None
    step_ms: dict[str, float]
    """median_ms and p90_ms of the step time."""
    phases: dict[str, PhaseStats]
    raw: dict
    """Per-step seconds: step_s (slowest rank), phases_s (mean over ranks), and every rank's own."""
    tasks_per_s_by_round: list[float]
    """Each round's own throughput: how much the machine varied."""
    devices: list[dict]

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- statistics


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linearly interpolated between order statistics (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def per_step(ranks: list[list[dict[str, float]]]) -> tuple[list[float], dict[str, list[float]]]:
    """Per timed step: the slowest rank's step time, and each phase's mean over ranks.

    A step ends for every rank at the all-reduce, so the slowest rank's clock is the
    step's; the mean phase shows where a rank's time goes, sync_wait the imbalance.
    """
    steps = len(ranks[0])
    step_s = [max(rank[s]["step"] for rank in ranks) for s in range(steps)]
    phases = {name: [sum(rank[s][name] for rank in ranks) / len(ranks) for s in range(steps)] for name in PHASES}
    return step_s, phases


def summarize(run: CountRun) -> CountSummary:
    """Throughput and phase statistics of one worker count (efficiency set by `with_efficiency`)."""
    step_s, phases = per_step(run.ranks)
    wall = sum(step_s)
    mean_step_total = sum(sum(rank[s]["step"] for rank in run.ranks) / len(run.ranks) for s in range(len(step_s)))
    stats = {
        name: PhaseStats(
            1000 * percentile(times, 50),
            1000 * percentile(times, 90),
            sum(times) / mean_step_total if mean_step_total > 0 else 0.0,
        )
        for name, times in phases.items()
    }
    per_worker = run.global_batch / run.workers
    return CountSummary(
        workers=run.workers,
        per_worker_batch=int(per_worker) if per_worker.is_integer() else per_worker,
        global_batch=run.global_batch,
        steps=len(step_s),
        wall_s=wall,
        tasks_per_s=run.global_batch * len(step_s) / wall,
        meta_steps_per_s=len(step_s) / wall,
        efficiency=None,
        step_ms={"median_ms": 1000 * percentile(step_s, 50), "p90_ms": 1000 * percentile(step_s, 90)},
        phases=stats,
        raw={"step_s": step_s, "phases_s": phases, "ranks": run.ranks},
        devices=run.devices,
        tasks_per_s_by_round=_by_round(step_s, run.rounds or [len(step_s)], run.global_batch),
    )


def _by_round(step_s: list[float], rounds: list[int], global_batch: int) -> list[float]:
    throughputs, start = [], 0
    for steps in rounds:
        throughputs.append(global_batch * steps / sum(step_s[start : start + steps]))
        start += steps
    return throughputs


def with_efficiency(summaries: list[CountSummary]) -> tuple[list[CountSummary], str]:
    """Each count's scaling efficiency from the measured throughputs, and what it is relative to.

    efficiency(W) = tasks_per_s(W) / (W / W0 x tasks_per_s(W0)), W0 the smallest count
    measured: with W0 = 1 the usual tasks_per_s(W) / (W x tasks_per_s(1)), for weak and
    strong scaling alike (strong scaling's global batch is the same at every count).
    """
    ordered = sorted(summaries, key=lambda s: s.workers)
    base = ordered[0]
    for summary in ordered:
        summary.efficiency = summary.tasks_per_s / (summary.workers / base.workers * base.tasks_per_s)
    if base.workers == 1:
        note = "relative to 1 worker: tasks_per_s(W) / (W x tasks_per_s(1))"
    else:
        note = (
            f"relative to {base.workers} workers (1 worker was not measured): "
            f"tasks_per_s(W) / (W / {base.workers} x tasks_per_s({base.workers}))"
        )
    return ordered, note


# ---------------------------------------------------------------- table


def bench_table(summaries: list[CountSummary]) -> str:
    """Throughput per worker count, then the phases of a step (ms median / p90, share) per count."""
    throughput = column_table(
        ["workers", "batch/worker", "global batch", "tasks/s", "meta-steps/s", "efficiency", "step ms (med / p90)"],
        [
            [
                str(s.workers),
                f"{s.per_worker_batch:g}",
                str(s.global_batch),
                f"{s.tasks_per_s:,.0f}",
                f"{s.meta_steps_per_s:.2f}",
                f"{100 * s.efficiency:.1f}%" if s.efficiency is not None else "-",
                f"{s.step_ms['median_ms']:.1f} / {s.step_ms['p90_ms']:.1f}",
            ]
            for s in summaries
        ],
    )
    phase_rows = [
        [label(name)]
        + [
            f"{s.phases[name].median_ms:.1f} / {s.phases[name].p90_ms:.1f} ({100 * s.phases[name].share:.1f}%)"
            for s in summaries
        ]
        for name in PHASES
    ]
    phases = column_table(["phase: ms med / p90 (share)"] + [f"{s.workers} worker(s)" for s in summaries], phase_rows)
    return throughput + "\n" + phases


def label(phase: str) -> str:
    return {"all_reduce": "all-reduce"}.get(phase, phase.replace("_", " "))


# ---------------------------------------------------------------- JSON and plot


def bench_json(request: dict, machine: dict, summaries: list[CountSummary], efficiency_note: str) -> dict:
    return {
        "benchmark": "distmeta bench",
        "request": request,
        "machine": machine,
        "measurement": MEASUREMENT,
        "efficiency": efficiency_note,
        "phases": list(PHASES),
        "results": [summary.to_dict() for summary in summaries],
    }


def write_plot(path: Path, summaries: list[CountSummary], title: str) -> None:
    """Left: tasks/s against workers with the ideal line; right: a step's phase medians, stacked."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on cluster nodes or in CI
    import matplotlib.pyplot as plt

    workers = [s.workers for s in summaries]
    base = summaries[0]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    left.plot(workers, [s.tasks_per_s for s in summaries], "o-", label="measured")
    left.plot(
        workers, [base.tasks_per_s * w / base.workers for w in workers], "--", color="grey", label="ideal (linear)"
    )
    left.set_xlabel("workers")
    left.set_ylabel("tasks/s")
    left.set_ylim(bottom=0)
    left.set_xticks(workers)
    left.legend()
    left.grid(alpha=0.3)
    positions = range(len(summaries))
    bottom = [0.0] * len(summaries)
    for name in PHASES:
        heights = [s.phases[name].median_ms for s in summaries]
        right.bar(positions, heights, bottom=bottom, label=label(name))
        bottom = [b + h for b, h in zip(bottom, heights)]
    right.set_xticks(list(positions), [str(w) for w in workers])
    right.set_xlabel("workers")
    right.set_ylabel("ms per meta-step (phase medians)")
    right.legend(fontsize="small")
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
