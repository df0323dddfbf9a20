"""The one interface every meta-learning algorithm implements.

An algorithm says two things about a single task:
- `adapt`: how the meta-parameters become a task-specific state from the support set,
  written with the algorithm's inner `update_rule` (`distmeta.algorithms.update_rules`);
- `predict`: what that state outputs on new inputs (the query set).
Its `estimator` (`distmeta.algorithms.estimators`) turns those into the meta-gradient
of a task. Everything here works on ONE task (no task dimension), so that
`distmeta.execution` can run a batch of tasks with `torch.func.vmap` or as a
plain loop, with the same code. Gradients are taken with `torch.func.grad`
(which vmap needs), or with `torch.autograd.grad` in a copy made by
`using_autograd()` (which the loop uses: it is faster per task and, unlike
torch.func, safe to run in several threads at once).

The class also carries what the registry (`distmeta.algorithms.ALGORITHMS`) asks of an
algorithm: construction from the config's algorithm section (`from_settings`), the checks
of that section (`check_settings`), seeded initial meta-parameters and their re-sizing
for another number of ways.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

import torch
import torch.nn.functional as F

from distmeta.algorithms.estimators import MetaGradient, MetaGradientEstimator, Unrolled
from distmeta.algorithms.update_rules import SGD, UpdateRule, run_rule
from distmeta.models import TwoPartModel, part_names

Params = dict[str, torch.Tensor]


def classification_loss(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs, labels)


def classification_score(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Accuracy: the fraction of examples whose highest output is their label."""
    return (outputs.argmax(dim=-1) == labels).to(outputs.dtype).mean()


def regression_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(outputs, targets)


class MetaAlgorithm:
    """Base class: subclasses implement `adapt` and `predict`, and may override the rest."""

    name = "base"
    own_settings: dict[str, str] = {}
    """Fields of the config's algorithm section that this algorithm alone reads, each with
    what it does ("adapts on minibatches of the support set"); another algorithm refuses
    them when set (see `distmeta.algorithms.registry`)."""

    def __init__(
        self,
        model: TwoPartModel,
        is_classification: bool,
        inner_lr: float,
        inner_steps: int,
        test_inner_steps: int,
        first_order: bool = False,
        update_rule: UpdateRule | None = None,
        estimator: MetaGradientEstimator | None = None,
        inner_grad_clip: float = 0.0,
    ):
        self.model = model
        self.is_classification = is_classification
        self.inner_lr = inner_lr
        self.inner_steps = inner_steps
        self.test_inner_steps = test_inner_steps
        self.first_order = first_order
        self.inner_grad_clip = inner_grad_clip
        """Each inner gradient entry is clamped to +- this before a step (0: off)."""
        self.update_rule = self.default_update_rule() if update_rule is None else update_rule
        self.estimator = self.default_estimator() if estimator is None else estimator
        self.autograd = False
        self.loss = classification_loss if is_classification else regression_loss
        self.score = classification_score if is_classification else regression_loss

    # ---------------------------------------------------------------- the registry's part

    @classmethod
    def from_settings(
        cls, settings: Any, model: TwoPartModel, is_classification: bool, output_size: int
    ) -> MetaAlgorithm:
        """The algorithm that the config's algorithm section `settings` describes."""
        return cls(
            model,
            is_classification,
            settings.inner_lr,
            settings.inner_steps,
            settings.test_inner_steps,
            first_order=settings.first_order,
            inner_grad_clip=settings.inner_grad_clip,
            **cls.extra_arguments(settings, output_size),
        )

    @classmethod
    def extra_arguments(cls, settings: Any, output_size: int) -> dict[str, Any]:
        """The constructor arguments an algorithm takes beyond the common ones, from `settings`
        (its algorithm section) and the task's `output_size` (the number of ways of a classifier)."""
        return {}

    @classmethod
    def check_settings(cls, settings: Any, is_classification: bool, task_name: str) -> None:
        """Raise ConfigError naming the field if `settings` cannot run this algorithm."""

    # ---------------------------------------------------------------- the interface

    def default_update_rule(self) -> UpdateRule:
        """The inner update rule when none is given: plain SGD at `inner_lr`."""
        return SGD(self.inner_lr)

    def default_estimator(self) -> MetaGradientEstimator:
        """The meta-gradient estimator when none is given: unrolled, second order unless `first_order`."""
        return Unrolled(second_order=not self.first_order)

    def learned_model_parameters(self, model_params: Params) -> Params:
        """Which of the model's parameters are meta-learned; by default all."""
        return dict(model_params)

    def adapted_names(self, model_params: Params) -> list[str]:
        """Names of the parameters the inner loop adapts; by default all of them."""
        return list(model_params)

    def adapt(self, meta_params: Params, support_x, support_y, steps: int, differentiable: bool) -> Params:
        """The task-specific state after `steps` inner steps on the support set."""
        raise NotImplementedError

    def predict(self, meta_params: Params, adapted: Params, x: torch.Tensor) -> torch.Tensor:
        """Outputs (logits or regression values) of the adapted state on `x`."""
        raise NotImplementedError

    def task_conditioning(self, meta_params: Params, support_x, support_y) -> torch.Tensor | None:
        """What the task-conditioned part of the algorithm outputs for this task, flattened
        (MMAML's FiLM parameters, ALFA's multipliers); None where nothing is conditioned on the
        task. Its spread across tasks shows a generator that has collapsed to a constant."""
        return None

    # ---------------------------------------------------------------- meta-parameters

    def init_meta_parameters(self, model_params: Params, seed: int = 0) -> Params:
        """What the meta-optimiser learns: the learned model parameters, then the update
        rule's own meta-parameters under `<rule namespace>.`, drawn from `seed` if random."""
        learned = self.learned_model_parameters(model_params)
        adapted = {name: learned[name] for name in self.adapted_names(learned)}
        generator = torch.Generator().manual_seed(seed)
        rule_params = self.update_rule.init_meta_parameters(adapted, generator)
        namespace = self.update_rule.namespace
        return {**learned, **{f"{namespace}.{name}": value for name, value in rule_params.items()}}

    def model_parameters(self, meta_params: Params) -> Params:
        """The model's own parameters among the meta-parameters."""
        return {name: value for name, value in meta_params.items() if self.rule_name(name) is None}

    def rule_parameters(self, meta_params: Params) -> Params:
        """The update rule's own meta-parameters, by the rule's names for them."""
        # A plain loop: torch.compile cannot trace an assignment expression inside a
        # comprehension ("read uninitialized cell"), and the graph break it made cost the
        # compiled sinusoid step its whole gain (measured 4.0 ms against 3.7 uncompiled).
        rule_params = {}
        for name, value in meta_params.items():
            rule_name = self.rule_name(name)
            if rule_name is not None:
                rule_params[rule_name] = value
        return rule_params

    def rule_name(self, name: str) -> str | None:
        """The update rule's name for the meta-parameter `name` (`<namespace>.<rule name>`);
        None when it is one of the model's."""
        namespace = self.update_rule.namespace
        if namespace and name.startswith(namespace + "."):
            return name[len(namespace) + 1 :]
        return None

    def meta_parameters_for_ways(self, meta_params: Params, ways: int) -> Params:
        """The meta-parameters for tasks of `ways` classes: every head entry (and a rule's
        meta-parameter named after one, such as Meta-SGD's rate of a head entry) starts each
        class from the mean of the trained class rows, so that adaptation alone tells them apart."""
        head_names = part_names(self.model, "head")
        resized = {}
        for name, value in meta_params.items():
            if (self.rule_name(name) or name) in head_names and value.shape[0] != ways:
                value = value.mean(dim=0, keepdim=True).expand(ways, *value.shape[1:]).clone()
            resized[name] = value
        return resized

    # ---------------------------------------------------------------- derived

    def using_autograd(self, own_model: bool = True) -> Self:
        """A copy that differentiates with torch.autograd: for loops and threads, not vmap.

        With `own_model` it has its own copy of the model, because `functional_call`
        swaps the parameters of the module it is given, which two threads must not
        share; one thread alone (always so on a GPU) shares the model, uncopied.
        """
        twin = copy.copy(self)
        twin.autograd = True
        if own_model:
            twin.model = copy.deepcopy(self.model)
        return twin

    def inner_loop(
        self,
        meta_params: Params,
        start: Params,
        loss_at_step: Callable[[int], Callable[[Params], torch.Tensor]],
        steps: int,
        differentiable: bool,
    ) -> Params:
        """`steps` steps of the update rule from `start`, step s descending `loss_at_step(s)`,
        with the rule's meta-parameters taken from `meta_params`."""
        rule = self.update_rule.bind(self.rule_parameters(meta_params))
        params, _ = run_rule(
            rule, loss_at_step, start, rule.init(start), steps, differentiable, self.autograd, self.inner_grad_clip
        )
        return params

    def training_adaptation(self, meta_params: Params, support_x, support_y) -> Params:
        """The adaptation of meta-training, without second-order terms (what Reptile moves towards)."""
        return self.adapt(meta_params, support_x, support_y, self.inner_steps, differentiable=False)

    def query_loss(
        self, meta_params: Params, support_x, support_y, query_x, query_y, differentiable: bool | None = None
    ):
        """Query loss after training-time adaptation, with (loss, score) as aux; the inner
        gradients are in the graph when `differentiable` (default: unless `first_order`)."""
        differentiable = not self.first_order if differentiable is None else differentiable
        adapted = self.adapt(meta_params, support_x, support_y, self.inner_steps, differentiable)
        outputs = self.predict(meta_params, adapted, query_x)
        loss = self.loss(outputs, query_y)
        return loss, (loss.detach(), self.score(outputs, query_y).detach())

    def task_estimate(self, meta_params: Params, support_x, support_y, query_x, query_y) -> MetaGradient:
        """The estimator's `MetaGradient` of one task."""
        problem = TaskAdaptation(self, support_x, support_y, query_x, query_y)
        return self.estimator.estimate(problem, meta_params, {})

    def task_meta_gradient(self, meta_params: Params, support_x, support_y, query_x, query_y):
        """(meta-gradient, query loss, query score) of one task."""
        estimate = self.task_estimate(meta_params, support_x, support_y, query_x, query_y)
        return estimate.grads, estimate.mean_loss, estimate.info["score"]

    def task_evaluation(self, meta_params: Params, support_x, support_y, query_x, query_y, steps: int):
        """(query loss, query score) of one task after `steps` inner steps; no meta-gradient."""
        adapted = self.adapt(meta_params, support_x, support_y, steps, differentiable=False)
        with torch.no_grad():
            outputs = self.predict(meta_params, adapted, query_x)
        return self.loss(outputs, query_y).detach(), self.score(outputs, query_y).detach()


@dataclass(frozen=True)
class TaskAdaptation:
    """An algorithm bound to one task: the `TaskProblem` that per-task estimators take."""

    algorithm: MetaAlgorithm
    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor

    @property
    def autograd(self) -> bool:
        return self.algorithm.autograd

    def meta_loss(self, meta_params: Params, differentiable: bool):
        loss, (_, score) = self.algorithm.query_loss(
            meta_params, self.support_x, self.support_y, self.query_x, self.query_y, differentiable
        )
        return loss, {"score": score}

    def adapted_parameters(self, meta_params: Params) -> Params:
        adapted = self.algorithm.training_adaptation(meta_params, self.support_x, self.support_y)
        return {name: value.detach() for name, value in adapted.items()}

    def evaluate(self, meta_params: Params, adapted: Params):
        outputs = self.algorithm.predict(meta_params, adapted, self.query_x)
        loss = self.algorithm.loss(outputs, self.query_y).detach()
        return loss, {"score": self.algorithm.score(outputs, self.query_y).detach()}
