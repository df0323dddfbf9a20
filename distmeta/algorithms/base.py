"""The one interface every meta-learning algorithm implements.

An algorithm says two things about a single task:
- `adapt`: how the meta-parameters become a task-specific state from the support set;
- `predict`: what that state outputs on new inputs (the query set).
From those, `task_meta_gradient` differentiates the query loss through the
adaptation. Everything here works on ONE task (no task dimension), so that
`distmeta.execution` can run a batch of tasks with `torch.func.vmap` or as a
plain loop, with the same code. Gradients are taken with `torch.func.grad`
(which vmap needs), or with `torch.autograd.grad` in a copy made by
`using_autograd()` (which the loop uses: it is faster per task and, unlike
torch.func, safe to run in several threads at once).
"""

from __future__ import annotations

from typing import Callable, Union

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import grad

Params = dict[str, torch.Tensor]
LearningRates = Union[float, Params]


def classification_loss(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs, labels)


def classification_score(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Accuracy: the fraction of examples whose highest output is their label."""
    return (outputs.argmax(dim=-1) == labels).to(outputs.dtype).mean()


def regression_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(outputs, targets)


def gradients(loss_of: Callable[[Params], torch.Tensor], params: Params, create_graph: bool, autograd: bool) -> Params:
    """d loss_of(params) / d params, kept in the graph when `create_graph`."""
    if not autograd:
        grads = grad(loss_of)(params)
        return grads if create_graph else {name: g.detach() for name, g in grads.items()}
    with torch.enable_grad():
        # evaluation starts from plain tensors: make them leaves to differentiate
        params = {k: v if v.requires_grad else v.detach().requires_grad_(True) for k, v in params.items()}
        values = list(params.values())
        grads = torch.autograd.grad(loss_of(params), values, create_graph=create_graph, allow_unused=True)
    return {name: torch.zeros_like(v) if g is None else g for (name, v), g in zip(params.items(), grads)}


def gradient_descent(
    loss_of: Callable[[Params], torch.Tensor],
    params: Params,
    learning_rates: LearningRates,
    steps: int,
    differentiable: bool,
    autograd: bool = False,
) -> Params:
    """`steps` plain gradient steps on `loss_of`, starting from `params`.

    With `differentiable`, the inner gradients stay in the graph so that an
    outer derivative sees second-order terms (MAML); without, they are treated
    as constants (first-order MAML, Reptile, evaluation).
    """
    for _ in range(steps):
        grads = gradients(loss_of, params, differentiable, autograd)
        updated = {}
        for name, value in params.items():
            rate = learning_rates[name] if isinstance(learning_rates, dict) else learning_rates
            updated[name] = value - rate * grads[name]
        params = updated
    return params


class MetaAlgorithm:
    """Base class: subclasses implement `adapt` and `predict`, and may override the rest."""

    name = "base"

    def __init__(
        self,
        model: nn.Module,
        is_classification: bool,
        inner_lr: float,
        inner_steps: int,
        test_inner_steps: int,
        first_order: bool = False,
    ):
        self.model = model
        self.is_classification = is_classification
        self.inner_lr = inner_lr
        self.inner_steps = inner_steps
        self.test_inner_steps = test_inner_steps
        self.first_order = first_order
        self.autograd = False
        self.loss = classification_loss if is_classification else regression_loss
        self.score = classification_score if is_classification else regression_loss

    # ---------------------------------------------------------------- the interface

    def init_meta_parameters(self, model_params: Params) -> Params:
        """What the meta-optimiser learns; by default the model's parameters."""
        return dict(model_params)

    def adapt(self, meta_params: Params, support_x, support_y, steps: int, differentiable: bool) -> Params:
        """The task-specific state after `steps` inner steps on the support set."""
        raise NotImplementedError

    def predict(self, meta_params: Params, adapted: Params, x: torch.Tensor) -> torch.Tensor:
        """Outputs (logits or regression values) of the adapted state on `x`."""
        raise NotImplementedError

    def model_parameters(self, meta_params: Params) -> Params:
        """The model's own parameters among the meta-parameters."""
        return meta_params

    # ---------------------------------------------------------------- derived

    def using_autograd(self, own_model: bool = True) -> "MetaAlgorithm":
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

    def inner_loop(self, loss_of, params: Params, learning_rates: LearningRates, steps: int, differentiable: bool):
        """`gradient_descent` with this algorithm's way of differentiating."""
        return gradient_descent(loss_of, params, learning_rates, steps, differentiable, self.autograd)

    def query_loss(self, meta_params: Params, support_x, support_y, query_x, query_y):
        """Query loss after training-time adaptation, with (loss, score) as aux."""
        adapted = self.adapt(meta_params, support_x, support_y, self.inner_steps, not self.first_order)
        outputs = self.predict(meta_params, adapted, query_x)
        loss = self.loss(outputs, query_y)
        return loss, (loss.detach(), self.score(outputs, query_y).detach())

    def task_meta_gradient(self, meta_params: Params, support_x, support_y, query_x, query_y):
        """(meta-gradient, query loss, query score) of one task."""
        if not self.autograd:
            grads, (loss, score) = grad(self.query_loss, has_aux=True)(
                meta_params, support_x, support_y, query_x, query_y
            )
            return grads, loss, score
        leaves = {name: value.detach().requires_grad_(True) for name, value in meta_params.items()}
        with torch.enable_grad():
            loss, (loss_value, score) = self.query_loss(leaves, support_x, support_y, query_x, query_y)
            values = list(leaves.values())
            grads = torch.autograd.grad(loss, values, allow_unused=True)
        grads = {name: torch.zeros_like(v) if g is None else g for (name, v), g in zip(leaves.items(), grads)}
        return grads, loss_value, score

    def task_evaluation(self, meta_params: Params, support_x, support_y, query_x, query_y, steps: int):
        """(query loss, query score) of one task after `steps` inner steps; no meta-gradient."""
        adapted = self.adapt(meta_params, support_x, support_y, steps, differentiable=False)
        with torch.no_grad():
            outputs = self.predict(meta_params, adapted, query_x)
        return self.loss(outputs, query_y).detach(), self.score(outputs, query_y).detach()
