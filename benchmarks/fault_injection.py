"""The fault table: each fault distmeta handles, injected at a known step of a tiny sinusoid
run on a real two-node local Ray cluster, and what it cost.

    nice -n 10 python benchmarks/fault_injection.py [--json benchmarks/results/fault_injection.json]

A few minutes on 2 shared cores. One `ray.cluster_utils.Cluster` on loopback (a head and a
second node, one CPU each); every run is `train_distributed` with one worker, 12 steps,
a checkpoint every 4 (and a progress record every step). The faults (`benchmarks/faults.py`):

- worker process killed: it exits abruptly before update 10; Ray Train restarts it;
- driver killed: the driver process (a subprocess) is SIGKILLed while its worker waits
  before update 10; the same run is started again;
- NaN loss: the tasks of update 10 have NaN targets; the run stops with
  `NonFiniteLossError`; the same run, its data mended, is started again;
- node removed: the worker's node is removed while it waits before update 10 (the head's
  CPU, held until then, is freed); Ray Train restarts it on the head;
- checkpoint write failing: the storage turns read-only as the checkpoint of step 8 is
  copied there; the run stops with `StorageError`; the same run is started again;
- truncated newest checkpoint: a run of 8 steps ends, its newest checkpoint (step 8) is cut
  to half; the same run, asked for 12 steps, is started again.

For each: the step the fault hit (updates done), the step the run resumed from (its
`resumed` record), the steps lost (run again: the steps recorded twice in metrics.jsonl),
the checkpoint files lost or skipped, the error raised, and whether the run then finished.
It prints the table and writes it, with the command, to benchmarks/results/fault_injection.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")  # runs of seconds: poll the workers often

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import faults  # noqa: E402

import distmeta.runtime.launcher as launcher  # noqa: E402
from distmeta.config import load_config  # noqa: E402
from distmeta.errors import DistmetaError  # noqa: E402
from distmeta.runtime.launcher import ClusterRequest, train_distributed  # noqa: E402
from distmeta.runtime.worker import train_worker  # noqa: E402
from distmeta.training.checkpoint import CheckpointSkippedWarning, checkpoint_files  # noqa: E402
from distmeta.training.progress import column_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
STEPS = 12
FAULT_AT = 10  # updates done when a mid-run fault hits: the last checkpoint is of step 8
RUN = [
    "train.meta_batch_size=4",
    "train.log_every=1",
    "train.val_every=0",
    "train.checkpoint_every=4",
    "model.hidden_sizes=[8]",
]


def config(steps: int = STEPS):
    return load_config(None, [f"train.steps={steps}", *RUN])


def train(storage: Path, name: str, worker_function=train_worker, steps: int = STEPS, address: str | None = None):
    """One run with `worker_function` as each worker's function; its result, or the error it raised."""
    launcher.train_worker = worker_function
    try:
        return train_distributed(
            config(steps),
            ClusterRequest(workers=1, storage=str(storage), name=name, address=address),
            print_fn=lambda *_: None,
            final_eval=False,
        )
    except DistmetaError as error:
        return error
    finally:
        launcher.train_worker = train_worker


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def resumed_from(run_dir: Path) -> list[int]:
    return [record["from_step"] for record in records(run_dir) if record.get("event") == "resumed"]


def steps_run_again(run_dir: Path) -> list[int]:
    counts = Counter(record["step"] for record in records(run_dir) if "step" in record)
    return sorted(step for step, times in counts.items() if times > 1)


def checkpoint_steps(run_dir: Path) -> list[int]:
    return [int(path.stem.split("_")[1]) for path in checkpoint_files(run_dir)]


def row(fault: str, injected: str, fault_step: int, run_dir: Path, error, finished, files: str) -> dict:
    """One line of the table, from what the run left in its folder."""
    resumed = resumed_from(run_dir)
    again = steps_run_again(run_dir)
    return {
        "fault": fault,
        "injected": injected,
        "fault_step": fault_step,
        "error": type(error).__name__ if error is not None else None,
        "resumed_from": resumed[-1] if resumed else None,
        "steps_lost": len(again),
        "steps_run_again": again,
        "files_lost_or_skipped": files,
        "finished_steps": getattr(finished, "steps", None),
    }


def worker_killed(storage: Path) -> dict:
    result = train(storage, "worker-killed", faults.dying_worker(FAULT_AT))
    assert faults.marker(storage / "worker-killed", faults.DIED).exists(), "the worker never died"
    return row(
        "worker process killed",
        f"os._exit(1) in the worker before update {FAULT_AT}",
        FAULT_AT,
        storage / "worker-killed",
        None,
        result,
        "none",
    )


def driver_killed(storage: Path, address: str) -> dict:
    run_dir = storage / "driver-killed"
    driver = subprocess.Popen(
        [sys.executable, __file__, "--driver-to-kill", str(storage), address],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    held = faults.wait_for(faults.marker(run_dir, faults.HELD), 300)
    driver.send_signal(signal.SIGKILL)
    output, _ = driver.communicate()
    assert held, output
    time.sleep(2)  # Ray ends the dead driver's job: its controller and worker
    result = train(storage, "driver-killed")
    return row(
        "driver killed, run again",
        f"SIGKILL to the driver while its worker waits before update {FAULT_AT}",
        FAULT_AT,
        run_dir,
        None,
        result,
        "none",
    )


def nan_loss(storage: Path) -> dict:
    run_dir = storage / "nan-loss"
    error = train(storage, "nan-loss", faults.nan_data_worker(FAULT_AT))
    assert getattr(error, "step", None) == FAULT_AT, error
    result = train(storage, "nan-loss")  # the data mended
    return row(
        "NaN loss",
        f"NaN targets in the tasks of update {FAULT_AT}",
        FAULT_AT,
        run_dir,
        error,
        result,
        "none (none written after the NaN)",
    )


def node_removed(storage: Path, cluster: Cluster) -> dict:
    run_dir = storage / "node-removed"
    second = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    placeholder = Placeholder.options(scheduling_strategy=here).remote()  # the worker goes to the second node
    ray.get(placeholder.ready.remote())
    runner = ThreadPoolExecutor(1)  # the run in a thread: Ray changes nodes from the main thread only
    try:
        run = runner.submit(train, storage, "node-removed", faults.held_worker(FAULT_AT))
        assert faults.wait_for(faults.marker(run_dir, faults.HELD), 300), run.exception() if run.done() else "no hold"
        workers = json.loads((run_dir / "workers.json").read_text())
        assert [worker["node"] for worker in workers] == [second.node_id], "the worker is not on the second node"
        cluster.remove_node(second)
        ray.kill(placeholder)
        result = run.result(timeout=300)
    finally:
        runner.shutdown(wait=False)
    return row(
        "node removed",
        f"cluster.remove_node of the worker's node while it waits before update {FAULT_AT}; the head holds the worker",
        FAULT_AT,
        run_dir,
        None,
        result,
        "none",
    )


@ray.remote(num_cpus=1)
class Placeholder:
    """Holds a node's CPU."""

    def ready(self) -> bool:
        return True


def checkpoint_write_fails(storage: Path) -> dict:
    run_dir = storage / "read-only"
    error = train(storage, "read-only", faults.read_only_storage_worker(8))
    assert type(error).__name__ == "StorageError", error
    kept = checkpoint_steps(run_dir)
    result = train(storage, "read-only")  # the storage writable again
    return row(
        "checkpoint write failing",
        "EROFS while Ray copies the checkpoint of step 8 to the storage",
        8,
        run_dir,
        error,
        result,
        f"step 8's, never written (kept: {', '.join(map(str, kept))})",
    )


def truncated_checkpoint(storage: Path) -> dict:
    run_dir = storage / "truncated"
    train(storage, "truncated", steps=8)
    newest = checkpoint_files(run_dir)[-1]
    faults.truncate(newest)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = train(storage, "truncated")
    skipped = [str(w.message) for w in seen if issubclass(w.category, CheckpointSkippedWarning)]
    assert skipped and str(newest) in skipped[0], seen
    return row(
        "truncated newest checkpoint",
        "the checkpoint of step 8 cut to half after the run",
        8,
        run_dir,
        None,
        result,
        f"step 8's, {newest.name}, skipped with a warning",
    )


def run_held_driver(storage: str, address: str) -> None:
    """The driver that `driver_killed` kills: its worker waits before update FAULT_AT."""
    train(Path(storage), "driver-killed", faults.held_worker(FAULT_AT), address=address)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=str(RESULTS / "fault_injection.json"))
    parser.add_argument("--driver-to-kill", nargs=2, metavar=("STORAGE", "ADDRESS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver_to_kill:
        run_held_driver(*args.driver_to_kill)
        return
    started, load_before = time.monotonic(), os.getloadavg()[0]
    storage = Path(tempfile.mkdtemp(prefix="faults-"))
    ray_temp = tempfile.mkdtemp(prefix="fir", dir="/tmp")  # short: Ray's socket paths must stay short
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False, "temp_dir": ray_temp}
    )
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        rows = [
            worker_killed(storage),
            driver_killed(storage, cluster.address),
            nan_loss(storage),
            node_removed(storage, cluster),
            checkpoint_write_fails(storage),
            truncated_checkpoint(storage),
        ]
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(storage, ignore_errors=True)
        shutil.rmtree(ray_temp, ignore_errors=True)
    wall = time.monotonic() - started
    print(table(rows))
    print(
        f"{len(rows)} faults in {wall:.0f} s (load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs)"
    )
    Path(args.json).write_text(
        json.dumps(
            {
                "command": {"script": "benchmarks/fault_injection.py", "json": os.path.relpath(args.json, ROOT)},
                "run": {
                    "steps": STEPS,
                    "workers": 1,
                    "overrides": RUN,
                    "cluster": "head + 1 node, 1 CPU each, loopback",
                },
                "wall_time_s": wall,
                "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
                "cpus": os.cpu_count(),
                "faults": rows,
            },
            indent=2,
        )
        + "\n"
    )


def table(rows: list[dict]) -> str:
    headers = ["fault", "at step", "error", "resumed from", "steps lost", "files lost / skipped", "finished"]
    cells = [
        [
            r["fault"],
            str(r["fault_step"]),
            r["error"] or "-",
            str(r["resumed_from"]),
            f"{r['steps_lost']} ({', '.join(map(str, r['steps_run_again'])) or '-'})",
            r["files_lost_or_skipped"],
            f"{r['finished_steps']}/{STEPS}" if r["finished_steps"] else "no",
        ]
        for r in rows
    ]
    return column_table(headers, cells)


if __name__ == "__main__":
    main()
