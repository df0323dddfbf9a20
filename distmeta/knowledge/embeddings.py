"""Task embeddings: a fixed-size vector per task, from a trained learner and a support set alone.

Three kinds:
- `features`: the mean support embedding of the model's `features` (Conv4's 64 channels, the
  MLP's last hidden layer), as ProtoNets' prototypes averaged over the classes. The features of
  a regression task's inputs say nothing of its targets (x is drawn alike for every task), so
  there it is the mean feature and the target-weighted mean feature, side by side.
- `gradient`: the gradient of the support loss at the meta-parameters (before any adaptation):
  the direction the task pulls the learner in. For classification only the `features`
  parameters count: the head's rows follow the task's arbitrary label order, the body does not.
- `adapted`: what the learner's own adaptation does with the support set: the adapted parameters
  less the meta-parameters after `algorithm.test_inner_steps` steps (the body's alone for
  classification, as for the gradient). Every algorithm with an inner loop (not ProtoNets).

Either raw vector goes through a fixed random Gaussian projection to `size` entries, drawn
from a seed (the run's), so that an embedding is deterministic for a checkpoint and a support
set, and every record of a run shares one space. Pure torch: no Ray, no application config.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from distmeta.algorithms.base import MetaAlgorithm, Params
from distmeta.models import features, part_names

EMBEDDING_KINDS = ("features", "gradient", "adapted")
DEFAULT_KIND = "features"
"""The default, from benchmarks/knowledge_base.py on the multimodal regression family: as a warm
start's retrieval of candidates, `features` and `gradient` gave the same MSE (-62% at 1 step) and
`features` costs one forward pass (the gradient a backward pass and a projection of every parameter,
`adapted` an adaptation); it works with every algorithm and, for classification, ignores the label
order. `adapted` names a task's family more often (54% against 42%; README, Knowledge base)."""
DEFAULT_SIZE = 64


@dataclass(frozen=True)
class EmbeddingSpec:
    """Which embedding, how long, and the seed of its projection."""

    kind: str = DEFAULT_KIND
    size: int = DEFAULT_SIZE
    projection_seed: int = 0

    def __post_init__(self):
        if self.kind not in EMBEDDING_KINDS:
            raise ValueError(f"embedding kind must be one of {EMBEDDING_KINDS}, got {self.kind!r}")
        if self.size < 1:
            raise ValueError(f"embedding size must be positive, got {self.size}")


def task_embedding(
    spec: EmbeddingSpec, algorithm: MetaAlgorithm, meta_params: Params, support_x: torch.Tensor, support_y: torch.Tensor
) -> torch.Tensor:
    """The `spec.size`-long embedding of one task (no task dimension), on the CPU, float32."""
    if spec.kind == "features":
        raw = feature_vector(algorithm, meta_params, support_x, support_y)
    elif spec.kind == "gradient":
        raw = gradient_vector(algorithm, meta_params, support_x, support_y)
    else:
        raw = adapted_vector(algorithm, meta_params, support_x, support_y)
    raw = raw.detach().float().cpu()
    return raw @ projection(raw.numel(), spec.size, spec.projection_seed)


def feature_vector(algorithm: MetaAlgorithm, meta_params: Params, support_x, support_y) -> torch.Tensor:
    """The mean support feature (classification), or it and the target-weighted mean (regression)."""
    with torch.no_grad():
        values = features(algorithm.model, algorithm.model_parameters(meta_params), support_x)
    if algorithm.is_classification:
        return values.mean(dim=0)
    weighted = values * support_y.reshape(len(values), -1)[:, :1]
    return torch.cat([values.mean(dim=0), weighted.mean(dim=0)])


def gradient_vector(algorithm: MetaAlgorithm, meta_params: Params, support_x, support_y) -> torch.Tensor:
    """The support loss's gradient at the meta-parameters, flattened (the body's alone for classification)."""
    leaves = {name: value.detach().requires_grad_(True) for name, value in meta_params.items()}
    names = embedded_parameter_names(algorithm, leaves)
    with torch.enable_grad():
        adapted = algorithm.adapt(leaves, support_x, support_y, 0, differentiable=True)
        loss = algorithm.loss(algorithm.predict(leaves, adapted, support_x), support_y)
        grads = torch.autograd.grad(loss, [leaves[name] for name in names], allow_unused=True)
    flat = [torch.zeros_like(leaves[name]) if grad is None else grad for name, grad in zip(names, grads)]
    return torch.cat([grad.reshape(-1) for grad in flat])


def adapted_vector(algorithm: MetaAlgorithm, meta_params: Params, support_x, support_y) -> torch.Tensor:
    """The support-adapted parameters less the meta-parameters, flattened (the body's alone for classification)."""
    if algorithm.name == "protonet":
        raise ValueError("the adapted embedding needs an inner loop; protonet has none (use features)")
    adapted = algorithm.adapt(meta_params, support_x, support_y, algorithm.test_inner_steps, differentiable=False)
    names = [name for name in embedded_parameter_names(algorithm, meta_params) if name in adapted]
    if not names:
        raise ValueError(
            f"the adapted embedding needs adapted body parameters; {algorithm.name} adapts only "
            f"the head of a classifier, whose rows follow the label order (use features)"
        )
    return torch.cat([(adapted[name] - meta_params[name]).reshape(-1) for name in names])


def embedded_parameter_names(algorithm: MetaAlgorithm, meta_params: Params) -> list[str]:
    """The model parameters whose gradient makes the embedding, in a fixed (sorted) order."""
    model_names = sorted(algorithm.model_parameters(meta_params))
    if not algorithm.is_classification:
        return model_names
    body = part_names(algorithm.model, "features")
    return [name for name in model_names if name in body]


@functools.lru_cache(maxsize=8)
def projection(in_size: int, out_size: int, seed: int) -> torch.Tensor:
    """A fixed Gaussian (in_size, out_size) matrix from `seed`, scaled to keep lengths (Johnson-Lindenstrauss)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(in_size, out_size, generator=generator) / out_size**0.5
