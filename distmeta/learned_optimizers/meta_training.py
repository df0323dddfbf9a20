"""Meta-training a learned optimiser in this process, over optimisee tasks, with a chosen estimator.

Each meta-step, each of `unrolls` persistent unrolls (an optimisee task trained by the rule)
moves on by one truncation and gives an estimate of the meta-gradient (truncated backprop,
antithetic ES or PES); their mean, clipped to a global norm of `gradient_clip`, is one Adam
step on the rule's meta-parameters. An unroll that ends starts afresh on a new task drawn
from the meta-training seeds. A meta-gradient that is not finite (an optimisee blown up
beyond what the loss clipping catches) is skipped and counted, not applied.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from distmeta.algorithms.estimators import MetaGradientEstimator
from distmeta.algorithms.truncated import META_LOSSES, PES, AntitheticES, TruncatedBackprop
from distmeta.algorithms.update_rules import Params, UpdateRule
from distmeta.errors import ConfigError
from distmeta.learned_optimizers.rules import RULES, make_rule
from distmeta.learned_optimizers.unroll import OptimiseeUnroll
from distmeta.tasks.optimisee import OptimiseeFamily, optimisee_seed

ESTIMATORS = ("truncated_backprop", "es", "pes")


@dataclass(frozen=True)
class MetaTrainingSettings:
    """How a learned optimiser is meta-trained."""

    optimizer: str = "lstm"
    """The learned optimiser: "lstm" or "mlp" (`distmeta.learned_optimizers.rules`)."""
    estimator: str = "truncated_backprop"
    """"truncated_backprop", "es" (antithetic ES) or "pes" (persistent ES)."""
    unroll_length: int = 100
    """Optimisee steps in a whole unroll, after which its task is replaced."""
    truncation_length: int = 20
    """Optimisee steps per meta-step (and per meta-gradient estimate)."""
    meta_loss: str = "mean"
    """"mean": the mean loss over the truncation; "final": its last loss."""
    log_loss: bool = False
    """Meta-train on log(optimisee loss), so that late, small losses count as much as early ones."""
    pairs: int = 8
    """Antithetic pairs of ES / PES."""
    sigma: float = 0.01
    """Standard deviation of ES / PES perturbations of the meta-parameters."""
    unrolls: int = 1
    """Unrolls (tasks) estimated and averaged per meta-step."""
    meta_steps: int = 200
    meta_lr: float = 1e-3
    """Adam's rate on the meta-parameters."""
    gradient_clip: float = 1.0
    """Global-norm clip of the meta-gradient (0 turns clipping off)."""
    loss_clip: float = 1e3
    """The optimisee loss the estimators see is clipped here; a NaN counts as this value."""
    seed: int = 0
    """Seeds the meta-parameters, the meta-training tasks and the ES noise."""

    def check(self) -> None:
        """Raise ConfigError naming the field for any bad setting, before any work."""
        if self.optimizer not in RULES:
            raise ConfigError(
                "optimizer", f"unknown learned optimiser {self.optimizer!r} (choose from {', '.join(RULES)})"
            )
        if self.estimator not in ESTIMATORS:
            raise ConfigError(
                "estimator", f"unknown estimator {self.estimator!r} (choose from {', '.join(ESTIMATORS)})"
            )
        if self.meta_loss not in META_LOSSES:
            raise ConfigError("meta_loss", f"must be one of {', '.join(META_LOSSES)}, got {self.meta_loss!r}")
        for name in ("unroll_length", "truncation_length", "pairs", "unrolls", "meta_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(name, f"must be at least 1, got {getattr(self, name)}")
        if self.truncation_length > self.unroll_length:
            raise ConfigError(
                "truncation_length",
                f"{self.truncation_length} is longer than the unroll (unroll_length {self.unroll_length})",
            )
        for name in ("sigma", "meta_lr", "loss_clip"):
            if not getattr(self, name) > 0:
                raise ConfigError(name, f"must be positive, got {getattr(self, name)}")
        if not self.gradient_clip >= 0:
            raise ConfigError("gradient_clip", f"must be 0 (off) or positive, got {self.gradient_clip}")


@dataclass
class MetaTrainingResult:
    rule: UpdateRule
    """The unbound rule; `rule.bind(meta_params)` is the trained optimiser."""
    meta_params: Params
    losses: list[float] = field(default_factory=list)
    """The mean meta-loss of each meta-step."""
    skipped_steps: int = 0
    """Meta-steps whose meta-gradient was not finite, and so not applied."""
    seconds: float = 0.0


def build_estimator(settings: MetaTrainingSettings) -> MetaGradientEstimator:
    if settings.estimator == "truncated_backprop":
        return TruncatedBackprop(settings.truncation_length, settings.meta_loss)
    if settings.estimator == "es":
        return AntitheticES(settings.truncation_length, settings.pairs, settings.sigma, settings.meta_loss)
    return PES(settings.truncation_length, settings.pairs, settings.sigma, settings.meta_loss)


def check_optimisee(family: OptimiseeFamily, seed: int) -> torch.device:
    """Refuse an optimisee whose loss is not finite before any update: no optimiser can train it.
    Returns the device its tasks live on (where the meta-parameters must live too)."""
    params, task = family.init(seed)
    loss = family.loss(params, task, torch.zeros((), dtype=torch.long))
    if not torch.isfinite(loss):
        raise ConfigError(
            "optimisee",
            f"loss is {loss.item()} at step 0 of task seed {seed}, before any update "
            f"(a broken optimisee: check its data and starting parameters)",
        )
    return loss.device


def meta_train(
    settings: MetaTrainingSettings,
    family: OptimiseeFamily,
    rule: UpdateRule | None = None,
    log: Callable[[int, float], Any] | None = None,
    log_every: int = 10,
) -> MetaTrainingResult:
    """Meta-train `rule` (by default the one `settings.optimizer` names, with its defaults) on
    tasks of `family`, on the device its tasks live on (a GPU for `QuadraticFamily(device="cuda")`);
    `log(meta_step, loss)` is called every `log_every` meta-steps."""
    settings.check()
    rule = make_rule(settings.optimizer) if rule is None else rule
    device = check_optimisee(family, optimisee_seed(settings.seed, "train", 0, 0))
    generator = torch.Generator().manual_seed(settings.seed)
    # drawn on the CPU, so that a seed starts from the same meta-parameters on any device
    initial = rule.init_meta_parameters({}, generator)
    meta_params = {name: value.to(device).requires_grad_(True) for name, value in initial.items()}
    outer = torch.optim.Adam(meta_params.values(), lr=settings.meta_lr)
    unroll = OptimiseeUnroll(rule, family, settings.unroll_length, settings.loss_clip, settings.log_loss)
    estimator = build_estimator(settings)
    states: list[dict[str, Any]] = [{} for _ in range(settings.unrolls)]
    result = MetaTrainingResult(rule, meta_params)
    started = time.perf_counter()
    for meta_step in range(settings.meta_steps):
        grads, losses = {name: torch.zeros_like(value) for name, value in meta_params.items()}, []
        for index in range(settings.unrolls):
            seed = optimisee_seed(settings.seed, "train", meta_step, index)
            estimate = estimator.estimate(unroll, meta_params, states[index], seed)
            states[index] = estimate.unroll_state
            losses.append(estimate.mean_loss.item())
            for name in grads:
                grads[name] += estimate.grads[name] / settings.unrolls
        result.losses.append(sum(losses) / len(losses))
        if not all(torch.isfinite(g).all() for g in grads.values()):
            result.skipped_steps += 1
            continue
        for name, value in meta_params.items():
            value.grad = grads[name]
        if settings.gradient_clip > 0:
            torch.nn.utils.clip_grad_norm_(meta_params.values(), settings.gradient_clip)
        outer.step()
        if log is not None and (meta_step + 1) % log_every == 0:
            log(meta_step + 1, result.losses[-1])
    result.seconds = time.perf_counter() - started
    result.meta_params = {name: value.detach().clone() for name, value in meta_params.items()}
    return result
