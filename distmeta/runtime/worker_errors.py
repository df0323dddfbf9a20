"""How a worker's user error reaches the driver: one way for training, tuning and the bench.

Ray Train retries every error a worker raises as if the worker had crashed, and a
user error (a NaN loss, a missing file, a full disk) would fail the same way again.
So the ranks first agree on it (`runtime.agreement`), then each sends it to an
`ErrorBox` actor the driver made for that `fit()` and ends cleanly; once `fit()`
returns, the driver raises that very error: its type and its fields
(`NonFiniteLossError.step`, `.task_seed`...), pickled whole (`DistmetaError.__reduce__`).
An actor rather than a file, so that it works when rank 0 runs on a node that shares
no storage with the driver; it holds no CPU the workers need, and it lives on the driver's
node, so that losing a worker's node mid-run (the workers then restart elsewhere) does not
take it with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import ray
from ray.actor import ActorHandle
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from distmeta.errors import DistmetaError


class ErrorBox:
    """The first user error any worker of one `fit()` sent."""

    def __init__(self):
        self.error: DistmetaError | None = None

    def put(self, error: DistmetaError) -> None:
        if self.error is None:  # every rank sends the error they agreed on: keep one
            self.error = error

    def get(self) -> DistmetaError | None:
        return self.error


# ray.remote called, not written as a class decorator: to mypy a decorated class stays the class
_ErrorBoxActor = ray.remote(num_cpus=0)(ErrorBox)


@contextmanager
def error_box() -> Iterator[ActorHandle]:
    """An `ErrorBox` for the workers of one `fit()` (pass it in their loop config), killed after."""
    # on the driver's node: a box on a node lost mid-run would die with it, and the driver's
    # read would fail after the workers had recovered and finished
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    box = _ErrorBoxActor.options(scheduling_strategy=here).remote()
    try:
        yield box
    finally:
        ray.kill(box)


def send_error(box: ActorHandle, error: DistmetaError) -> None:
    """From a worker: `error` for the driver to raise; the worker then ends cleanly."""
    ray.get(box.put.remote(error))


def raise_sent_error(box: ActorHandle) -> None:
    """On the driver, after `fit()`: raise the error a worker sent, if any."""
    error = ray.get(box.get.remote())
    if error is not None:
        raise error
