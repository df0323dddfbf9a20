"""Compiled meta-steps (`train.compile`): a rank's meta-gradient under `torch.compile`.

What is compiled is the function a step calls once per rank (`batch_meta_gradient`'s work):
- vmap: the whole vectorised batch, meta-gradients summed, in one graph;
- loop: one task's meta-gradient (with torch.func, which compiles; torch.autograd's double
  backward does not), called task after task in this thread. Compiled code is not run from
  the loop's task threads: torch.compile makes no promise about running in several at once.
Shapes are static (`dynamic=False`): a rank sees the same batch shapes every step, so it
compiles once, on its first step, and never again (a recompilation is reported).

`auto` compiles only where it pays back: for a (model, strategy, device) whose compile time
and speed-up were measured (`MEASURED`), it times the first steps uncompiled, then compiles
when the steps left would save more than the compile costs. The decision, with its
figures, and the compile time are printed. A compile that fails stops an `on` run, naming
the setting; an `auto` run goes on uncompiled and says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import vmap

from distmeta.algorithms import MetaAlgorithm, Params
from distmeta.determinism import refusals_named
from distmeta.errors import ConfigError
from distmeta.execution import BatchGradient, batch_meta_gradient
from distmeta.tasks import TaskBatch

COMPILE_MODES = ("auto", "on", "off")
PROBE_STEPS = 5
"""Uncompiled steps `auto` times before it decides (the first, with its warm-up, not counted; the
fastest of the others is taken as the uncompiled step time)."""


@dataclass(frozen=True)
class CompileGain:
    """What compiling measured for a setting: the compile's seconds, and uncompiled time over compiled."""

    compile_s: float
    speedup: float
    measured: str


MEASURED: dict[tuple[str, str, str], CompileGain] = {
    ("mlp", "vmap", "cpu"): CompileGain(21.0, 3.1, "sinusoid MLP, meta-batch 25, 2-core CPU: 3.0 -> 0.95 ms/step"),
}
"""(model, strategy, device type) -> gain. A setting not here is not compiled by `auto`: Conv4's
vmap was measured slower compiled (1.9 s) than its uncompiled threaded loop (1.4 s) on CPU."""


class MetaGradientRunner:
    """A rank's meta-gradient of a batch, compiled or not as `train.compile` says."""

    def __init__(
        self,
        algorithm: MetaAlgorithm,
        strategy: str,
        chunk_size: int | None,
        mode: str,
        setting: tuple[str, str, str],
        print_fn: Callable[[str], None] = print,
        backend: str = "inductor",
    ):
        if mode not in COMPILE_MODES:
            raise ConfigError("train.compile", f"unknown value {mode!r} (choose from {', '.join(COMPILE_MODES)})")
        self.algorithm, self.strategy, self.chunk_size = algorithm, strategy, chunk_size
        self.mode, self.setting, self.print_fn, self.backend = mode, setting, print_fn, backend
        self.steps_left: int | None = None
        self.compiled: Callable[[Params, TaskBatch], BatchGradient] | None = None
        self.decided = mode == "off"
        self.compile_s: float | None = None
        self._probe: list[float] = []
        self._pending_reason = ""
        self._graphs = 0

    def plan(self, steps_left: int) -> None:
        """The steps this run has left: what `auto` weighs the compile time against."""
        self.steps_left = steps_left

    def __call__(self, meta_params: Params, batch: TaskBatch) -> BatchGradient:
        if self.compiled is not None:
            return self._run_compiled(self.compiled, meta_params, batch)
        if not self.decided and self.mode == "on":
            return self._compile_and_run(meta_params, batch, "on: set in the config")
        started = time.perf_counter()
        result = batch_meta_gradient(self.algorithm, meta_params, batch, self.strategy, self.chunk_size)
        if not self.decided:
            self._probe.append(time.perf_counter() - started)
            if len(self._probe) > PROBE_STEPS:
                self._decide_auto()
        return result

    def _decide_auto(self) -> None:
        self.decided = True
        gain = MEASURED.get(self.setting)
        model, strategy, device = self.setting
        if gain is None:
            self.print_fn(f"compile: off (auto: no measured gain for {model} {strategy} on {device})")
            return
        if self.steps_left is None:  # not a training loop (a benchmark, a one-off gradient): nothing to earn
            self.print_fn("compile: off (auto: no planned number of steps to pay the compile back)")
            return
        # the fastest probe: early steps run slower (allocator and caches warming), and a step
        # over-estimated would make a short run pay for a compile it never earns back
        step_s = min(self._probe[1:])
        saving_s = step_s * (1 - 1 / gain.speedup)
        pays_after = gain.compile_s / saving_s
        steps_left = self.steps_left - len(self._probe)
        figures = (
            f"{1000 * step_s:.2f} ms/step uncompiled, x{gain.speedup:g} measured compiled "
            f"({gain.measured}), compile ~{gain.compile_s:.0f} s: pays back after {pays_after:,.0f} steps, "
            f"{steps_left:,} left"
        )
        if steps_left <= pays_after:
            self.print_fn(f"compile: off (auto: {figures})")
            return
        self.compiled = self._build()
        self._pending_reason = f"auto: {figures}"

    def _build(self) -> Callable[[Params, TaskBatch], BatchGradient]:
        options = dict(backend=self.backend, dynamic=False)
        if self.strategy == "vmap":
            return _compiled_vmap(self.algorithm, self.chunk_size, options)
        return _compiled_loop(self.algorithm, options)

    def _compile_and_run(self, meta_params: Params, batch: TaskBatch, reason: str) -> BatchGradient:
        self.decided = True
        self.compiled = compiled = self._build()
        self._pending_reason = reason
        return self._run_compiled(compiled, meta_params, batch)

    def _run_compiled(
        self, compiled: Callable[[Params, TaskBatch], BatchGradient], meta_params: Params, batch: TaskBatch
    ) -> BatchGradient:
        if self.compile_s is not None:
            result = compiled(meta_params, batch)
            self._report_recompiles()
            return result
        started = time.perf_counter()
        try:
            with refusals_named():
                result = compiled(meta_params, batch)
        except Exception as error:  # torch.compile's failures have many types (dynamo, inductor, C++ build)
            return self._failed(error, meta_params, batch)
        self.compile_s = time.perf_counter() - started
        self._graphs = _graphs_compiled()
        self.print_fn(f"compile: on ({self._pending_reason}); compiled in {self.compile_s:.1f} s")
        return result

    def _failed(self, error: Exception, meta_params: Params, batch: TaskBatch) -> BatchGradient:
        if self.mode == "on":
            raise ConfigError(
                "train.compile",
                f"torch.compile failed on this setting ({type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''}); "
                "set train.compile=off or auto",
            ) from error
        self.print_fn(f"compile: off (auto: torch.compile failed, {type(error).__name__}; running uncompiled)")
        self.compiled = None
        return batch_meta_gradient(self.algorithm, meta_params, batch, self.strategy, self.chunk_size)

    def _report_recompiles(self) -> None:
        graphs = _graphs_compiled()
        if graphs != self._graphs:
            self.print_fn(
                f"compile: recompiled after the first step ({graphs - self._graphs} more graphs): "
                "a batch's shapes or the parameters' properties changed"
            )
            self._graphs = graphs


def _graphs_compiled() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def _compiled_vmap(algorithm: MetaAlgorithm, chunk_size: int | None, options: dict):
    per_task = vmap(algorithm.task_estimate, in_dims=(None, 0, 0, 0, 0), chunk_size=chunk_size)

    def batch_gradient(meta_params: Params, support_x, support_y, query_x, query_y):
        estimate = per_task(meta_params, support_x, support_y, query_x, query_y)
        grad_sum = {name: g.sum(0) for name, g in estimate.grads.items()}
        return grad_sum, estimate.mean_loss, estimate.info["score"]

    compiled = torch.compile(batch_gradient, **options)

    def run(meta_params: Params, batch: TaskBatch) -> BatchGradient:
        return BatchGradient(*compiled(meta_params, *batch.tensors()))

    return run


def _compiled_loop(algorithm: MetaAlgorithm, options: dict):
    def task_gradient(meta_params: Params, support_x, support_y, query_x, query_y):
        estimate = algorithm.task_estimate(meta_params, support_x, support_y, query_x, query_y)
        return estimate.grads, estimate.mean_loss, estimate.info["score"]

    compiled = torch.compile(task_gradient, **options)

    def run(meta_params: Params, batch: TaskBatch) -> BatchGradient:
        grad_sum = {name: torch.zeros_like(value) for name, value in meta_params.items()}
        losses, scores = [], []
        for task in range(len(batch)):
            grads, loss, score = compiled(meta_params, *(t[task] for t in batch.tensors()))
            for name, g in grads.items():
                grad_sum[name] += g
            losses.append(loss)
            scores.append(score)
        return BatchGradient(grad_sum, torch.stack(losses), torch.stack(scores))

    return run
