"""How a bench's times reach the driver: rank 0 sends every rank's to a `ResultBox` actor.

An actor rather than a file, so that it works when rank 0 runs on another node without
storage shared with the driver; it holds no CPU the workers need. A user error goes to the
error box instead (`distmeta.runtime.worker_errors`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import ray
import torch
from ray.actor import ActorHandle

from distmeta.runtime.collective import gathered


class ResultBox:
    """The times rank 0 sent, once it has."""

    def __init__(self):
        self.value: dict | None = None

    def put(self, value: dict) -> None:
        self.value = value

    def get(self) -> dict | None:
        return self.value


_ResultBoxActor = ray.remote(num_cpus=0)(ResultBox)  # called, not a decorator: see runtime.worker_errors


@contextmanager
def result_box() -> Iterator[ActorHandle]:
    """A `ResultBox` for the workers of one bench run (pass it in their loop config), killed after."""
    box = _ResultBoxActor.remote()
    try:
        yield box
    finally:
        ray.kill(box)


def send_times(box: ActorHandle, rank: int, workers: list[dict], times: list[dict], device_name: str) -> None:
    """On every rank (a collective): this rank's timed steps and device; rank 0 sends them all,
    with each rank's entry of `workers` (`runtime.worker.describe_workers`)."""
    everyone = gathered({"times": times, "device_name": device_name, "threads": torch.get_num_threads()})
    if rank != 0:
        return
    devices = [
        {**worker, "device_name": ranked["device_name"], "threads": ranked["threads"]}
        for worker, ranked in zip(workers, everyone)
    ]
    ray.get(box.put.remote({"ranks": [ranked["times"] for ranked in everyone], "devices": devices}))


def received_times(box: ActorHandle) -> dict | None:
    """On the driver, after the run: {"ranks": each rank's times, "devices": ...}, None if none came."""
    return ray.get(box.get.remote())
