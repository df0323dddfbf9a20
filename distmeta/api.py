"""The Python API: load a meta-trained checkpoint, adapt to a new task, predict.

    learner = distmeta.load("runs/omniglot-maml-.../")
    model = learner.adapt(support_x, support_y)   # e.g. one drawing per new character
    labels = model.predict(query_x)

For classification any number of ways works and the labels may be any values
(ints, strings): they are mapped to 0..N-1 and back. The algorithm re-sizes its
meta-parameters for another N (`MetaAlgorithm.meta_parameters_for_ways`): a MAML-family
head trained for N ways starts every class from the mean of the trained class rows, so
that adaptation alone tells them apart.

Whatever device the learner computes on, what it returns (outputs, values) is on
the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from distmeta.algorithms import MetaAlgorithm, Params, build_algorithm
from distmeta.config import Config, config_hash
from distmeta.devices import resolve_device, usable_device
from distmeta.errors import DistmetaError
from distmeta.experiment import Experiment, build_experiment
from distmeta.knowledge import EmbeddingSpec, KnowledgeBase, SimilarTask, task_embedding
from distmeta.models import build_model
from distmeta.training.checkpoint import checkpoint_config, load_checkpoint


@dataclass
class AdaptedModel:
    """A model adapted to one task; `predict` gives labels (classification) or values."""

    algorithm: MetaAlgorithm
    meta_params: Params
    adapted: Params
    classes: list | None
    """The support set's labels, sorted; output i is classes[i]. None for regression."""

    @torch.no_grad()
    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Raw outputs, on the CPU: logits over the task's classes, or regression values."""
        device = next(iter(self.meta_params.values())).device
        x = torch.as_tensor(x, dtype=torch.float32, device=device)
        return self.algorithm.predict(self.meta_params, self.adapted, x).cpu()

    def predict(self, x: torch.Tensor) -> Any:
        outputs = self.outputs(x)
        if self.classes is None:
            return outputs
        indices = outputs.argmax(dim=-1).tolist()
        return [self.classes[i] for i in indices]


class Learner:
    """Meta-trained parameters with the algorithm that adapts them."""

    def __init__(self, experiment: Experiment, meta_params: Params, step: int, run_dir: Path | None = None):
        self.experiment = experiment
        self.config: Config = experiment.config
        self.algorithm = experiment.algorithm
        self.device = experiment.device
        self.meta_params = meta_params
        self.step = step
        self.run_dir = run_dir
        """The run folder, where the knowledge base lives (None: a learner built in memory)."""
        self.knowledge_metric = "euclidean"
        """How `knowledge` compares embeddings: euclidean (the default: it gave the better warm starts,
        benchmarks/knowledge_base.py) or cosine; set before its first use."""
        self._knowledge: KnowledgeBase | None = None

    def adapt(self, support_x, support_y, steps: int | None = None, warm_start: str | None = None,
              neighbours: int = 5) -> AdaptedModel:
        """Adapt to a task from its support set; `steps` defaults to algorithm.test_inner_steps.

        `warm_start="knowledge"` starts from the meta-parameters plus the similarity-weighted
        mean of what adaptation learned on the `neighbours` nearest tasks of the run's knowledge
        base (`distmeta kb build`), rather than from the plain meta-parameters.
        """
        steps = self.algorithm.test_inner_steps if steps is None else steps
        x = torch.as_tensor(support_x, dtype=torch.float32, device=self.device)
        if not self.config.is_classification:
            y = torch.as_tensor(support_y, dtype=torch.float32, device=self.device).reshape(len(x), -1)
            start = self._start(warm_start, self.algorithm, self.meta_params, x, y, neighbours)
            adapted = self._adapt(self.algorithm, start, x, y, steps)
            return AdaptedModel(self.algorithm, start, adapted, None)
        classes, y = _encode_labels(support_y)
        algorithm, params = self._for_ways(len(classes))
        start = self._start(warm_start, algorithm, params, x, y.to(self.device), neighbours)
        adapted = self._adapt(algorithm, start, x, y.to(self.device), steps)
        return AdaptedModel(algorithm, start, adapted, classes)

    def similar_tasks(self, support_x, support_y, k: int = 5) -> list[SimilarTask]:
        """The `k` stored tasks nearest this support set in the run's knowledge base, nearest first."""
        x = torch.as_tensor(support_x, dtype=torch.float32, device=self.device)
        if self.config.is_classification:
            y = _encode_labels(support_y)[1].to(self.device)
        else:
            y = torch.as_tensor(support_y, dtype=torch.float32, device=self.device).reshape(len(x), -1)
        return self.knowledge.nearest(self._embedding(self.algorithm, self.meta_params, x, y), k)

    @property
    def knowledge(self) -> KnowledgeBase:
        """The run's knowledge base at this learner's step, read on first use."""
        if self._knowledge is None:
            if self.run_dir is None:
                raise DistmetaError("this learner has no run folder, so no knowledge base: load it from a run")
            self._knowledge = KnowledgeBase.open(self.run_dir, config_hash(self.config), self.step,
                                                 self.knowledge_metric)
        return self._knowledge

    def _embedding(self, algorithm, params: Params, x, y) -> torch.Tensor:
        header = self.knowledge.header
        spec = EmbeddingSpec(header.embedding_kind, header.embedding_size, header.projection_seed)
        return task_embedding(spec, algorithm, params, x, y)

    def _start(self, warm_start: str | None, algorithm, params: Params, x, y, neighbours: int) -> Params:
        """The parameters adaptation starts from: `params`, or a warm start from the knowledge base."""
        if warm_start is None:
            return params
        if warm_start != "knowledge":
            raise DistmetaError(f"warm_start: must be None or 'knowledge', got {warm_start!r}")
        delta = self.knowledge.warm_start_delta(self._embedding(algorithm, params, x, y), neighbours)
        for name, value in delta.items():
            if value.shape != params[name].shape:
                raise DistmetaError(f"warm_start: the knowledge base's {name} has shape {tuple(value.shape)}, "
                                    f"this task's {tuple(params[name].shape)} (another number of ways?)")
        return {**params, **{name: params[name] + value.to(params[name]) for name, value in delta.items()}}

    def _adapt(self, algorithm, params: Params, x, y, steps: int) -> Params:
        adapted = algorithm.adapt(params, x, y, steps, differentiable=False)
        return {name: value.detach() for name, value in adapted.items()}

    def _for_ways(self, ways: int):
        """The algorithm and meta-parameters for `ways` classes (the trained ones if equal)."""
        if ways == self.experiment.output_size:
            return self.algorithm, self.meta_params
        model = build_model(self.config, ways, self.config.task.omniglot.image_size).to(self.device)
        algorithm = build_algorithm(self.config.algorithm, model, True, ways)
        return algorithm, self.algorithm.meta_parameters_for_ways(self.meta_params, ways)


def _encode_labels(labels: Sequence) -> tuple[list, torch.Tensor]:
    values = labels.tolist() if isinstance(labels, torch.Tensor) else list(labels)
    classes = sorted(set(values), key=lambda v: (str(type(v)), v))
    if len(classes) < 2:
        raise DistmetaError(f"support_y: a classification task needs at least 2 classes, got {classes}")
    index = {label: i for i, label in enumerate(classes)}
    return classes, torch.tensor([index[v] for v in values], dtype=torch.long)


def load(checkpoint: str | Path, device: str | None = None) -> Learner:
    """A Learner from a checkpoint file or a run directory (its latest checkpoint).

    `device`: cpu, cuda or auto; None: the checkpoint's `train.device` where this machine
    has it, else the CPU (a GPU-trained checkpoint runs on a laptop as it is).
    """
    payload = load_checkpoint(checkpoint)
    config = checkpoint_config(payload)
    chosen = resolve_device(device, field="device") if device else usable_device(config.train.device)[0]
    experiment = build_experiment(config, chosen, check_data=False)
    params = {name: value.to(experiment.device) for name, value in payload["meta_parameters"].items()}
    return Learner(experiment, params, payload["step"], Path(payload["path"]).parent.parent)
