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
the CPU. Inputs are checked first (`distmeta.inputs`): a wrong shape, length, dtype or
label count raises an `InputError` naming the argument. An image learner also takes
drawings (file paths, PIL images, arrays of any size) and preprocesses them as the
training data was (`Learner.preprocess`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from distmeta.algorithms import MetaAlgorithm, Params
from distmeta.config import Config, config_hash
from distmeta.devices import resolve_device, usable_device
from distmeta.errors import DistmetaError, InputError
from distmeta.experiment import Experiment, build_experiment
from distmeta.inputs import class_labels, inner_steps, model_inputs, regression_targets
from distmeta.knowledge import EmbeddingSpec, KnowledgeBase, SimilarTask, task_embedding
from distmeta.knowledge.warm_start import DEFAULT_CANDIDATES, label_free_names, support_loss_of
from distmeta.storage import Location, as_path, location
from distmeta.tasks.drawings import drawing_pixels, open_drawing, to_model_input
from distmeta.training.checkpoint import checkpoint_config, load_checkpoint


@dataclass
class AdaptedModel:
    """A model adapted to one task; `predict` gives labels (classification) or values."""

    learner: Learner
    algorithm: MetaAlgorithm
    meta_params: Params
    adapted: Params
    classes: list | None
    """The support set's labels, sorted; output i is classes[i]. None for regression."""

    @torch.no_grad()
    def outputs(self, x) -> torch.Tensor:
        """Raw outputs, on the CPU: logits over the task's classes, or regression values.
        `x`: as `Learner.adapt`'s `support_x`."""
        return self.algorithm.predict(self.meta_params, self.adapted, self.learner.inputs(x, "x")).cpu()

    def predict(self, x) -> Any:
        outputs = self.outputs(x)
        if self.classes is None:
            return outputs
        indices = outputs.argmax(dim=-1).tolist()
        return [self.classes[i] for i in indices]


class Learner:
    """Meta-trained parameters with the algorithm that adapts them."""

    def __init__(self, experiment: Experiment, meta_params: Params, step: int, run_dir: Path | Location | None = None):
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

    @property
    def takes_images(self) -> bool:
        return self.config.model_name == "conv4"

    @property
    def example_shape(self) -> tuple[int, ...]:
        """The shape of one input as the model takes it: (1, size, size) images, or (1,) values."""
        if self.takes_images:
            size = self.config.task.omniglot.image_size
            return (1, size, size)
        return (1,)

    def preprocess(self, drawings) -> torch.Tensor:
        """Drawings as the model takes them, preprocessed exactly as the training data was
        (`distmeta.tasks.drawings`): a (N, 1, size, size) float tensor on the CPU.

        `drawings`: one or a list of file paths, PIL images or arrays of any size (dark
        strokes on a light ground, as Omniglot's PNGs: uint8, bool, or floats in [0, 1]).
        """
        if not self.takes_images:
            raise InputError("drawings", "a learner of images", f"a {self.config.model_name} learner of values")
        if isinstance(drawings, (str, Path, Image.Image)):
            drawings = [drawings]
        if not drawings:
            raise InputError("drawings", "at least one drawing", "none")
        size = self.config.task.omniglot.image_size
        pixels = np.stack(
            [drawing_pixels(open_drawing(drawing, f"drawings[{i}]"), size) for i, drawing in enumerate(drawings)]
        )
        return to_model_input(pixels)

    def inputs(self, x, argument: str) -> torch.Tensor:
        """`x` checked and on the learner's device: a (N, *example_shape) batch, or (image
        learners) drawings to preprocess: a path or PIL image, or a list of drawings."""
        if self.takes_images and (
            isinstance(x, (str, Path, Image.Image)) or (isinstance(x, (list, tuple)) and x and not _numbers(x[0]))
        ):
            x = self.preprocess(x)
        return model_inputs(x, argument, self.example_shape, self.device)

    def adapt(
        self, support_x, support_y, steps: int | None = None, warm_start: str | None = None, neighbours: int = 5
    ) -> AdaptedModel:
        """Adapt to a task from its support set; `steps` defaults to algorithm.test_inner_steps.

        `support_x`: a (N, *example_shape) batch; an image learner also takes drawings
        (see `preprocess`). `support_y`: N labels (any values), or N regression targets.
        `warm_start="knowledge"` starts from the meta-parameters plus the weighted mean of what
        adaptation learned on stored tasks of the run's knowledge base (`distmeta kb build`): of
        the tasks nearest by embedding, the `neighbours` whose stored models fit this support set
        best, weighted by that fit (`KnowledgeBase.fitted_warm_start_delta`); for a classifier, the
        body's stored adaptation alone (`knowledge.warm_start.label_free_names`: a head's rows follow
        each stored task's arbitrary label order)."""
        steps = self.algorithm.test_inner_steps if steps is None else inner_steps(steps)
        x = self.inputs(support_x, "support_x")
        if not self.config.is_classification:
            y = regression_targets(support_y, "support_y", len(x), self.experiment.output_size, self.device)
            start = self._start(warm_start, self.algorithm, self.meta_params, x, y, neighbours)
            adapted = self._adapt(self.algorithm, start, x, y, steps)
            return AdaptedModel(self, self.algorithm, start, adapted, None)
        classes, y = class_labels(support_y, "support_y", len(x))
        algorithm, params = self.experiment.for_ways(len(classes), self.meta_params)
        start = self._start(warm_start, algorithm, params, x, y.to(self.device), neighbours)
        adapted = self._adapt(algorithm, start, x, y.to(self.device), steps)
        return AdaptedModel(self, algorithm, start, adapted, classes)

    def similar_tasks(self, support_x, support_y, k: int = 5) -> list[SimilarTask]:
        """The `k` stored tasks nearest this support set in the run's knowledge base, nearest first."""
        x = self.inputs(support_x, "support_x")
        if self.config.is_classification:
            y = class_labels(support_y, "support_y", len(x))[1].to(self.device)
        else:
            y = regression_targets(support_y, "support_y", len(x), self.experiment.output_size, self.device)
        return self.knowledge.nearest(self._embedding(self.algorithm, self.meta_params, x, y), k)

    @property
    def knowledge(self) -> KnowledgeBase:
        """The run's knowledge base at this learner's step, read on first use."""
        if self._knowledge is None:
            if self.run_dir is None:
                raise DistmetaError("this learner has no run folder, so no knowledge base: load it from a run")
            self._knowledge = KnowledgeBase.open(
                self.run_dir, config_hash(self.config), self.step, self.knowledge_metric
            )
        return self._knowledge

    def stored_fit(self, support_x, support_y, candidates: int = DEFAULT_CANDIDATES) -> tuple[SimilarTask, float]:
        """The stored task whose stored model fits this support set best (of the embedding's
        `candidates` nearest), and that loss: how well this learner's experience covers the task
        (`distmeta.route` compares it across learners)."""
        x = self.inputs(support_x, "support_x")
        if self.config.is_classification:
            y = class_labels(support_y, "support_y", len(x))[1].to(self.device)
        else:
            y = regression_targets(support_y, "support_y", len(x), self.experiment.output_size, self.device)
        return self.knowledge.best_fit(
            self._embedding(self.algorithm, self.meta_params, x, y),
            support_loss_of(self.algorithm, self.meta_params, x, y),
            candidates,
        )

    def serve_knowledge(self, **actor_options) -> None:
        """Answer this learner's knowledge-base searches from a Ray actor holding the index
        (`distmeta.runtime.knowledge.serve_index`, on the Ray cluster already initialised), which
        other clients may share (`self.knowledge.index.actor`). The same neighbours as in process."""
        from distmeta.runtime.knowledge import serve_index  # Ray only for a learner that asks for it

        base = self.knowledge
        served = serve_index(base.records.embedding, base.metric, **actor_options)
        self._knowledge = KnowledgeBase(base.header, base.records, base.metric, base.source, index=served)

    def _embedding(self, algorithm, params: Params, x, y) -> torch.Tensor:
        header = self.knowledge.header
        spec = EmbeddingSpec(header.embedding_kind, header.embedding_size, header.projection_seed)
        return task_embedding(spec, algorithm, params, x, y)

    def _start(self, warm_start: str | None, algorithm, params: Params, x, y, neighbours: int) -> Params:
        """The parameters adaptation starts from: `params`, or a warm start from the knowledge base."""
        if warm_start is None:
            return params
        if warm_start != "knowledge":
            raise InputError("warm_start", "None or 'knowledge'", repr(warm_start))
        header = self.knowledge.header
        for name, shape in zip(header.adapted_names, header.adapted_shapes):
            if tuple(shape) != tuple(params[name].shape):
                raise DistmetaError(
                    f"warm_start: the knowledge base's {name} has shape {tuple(shape)}, "
                    f"this task's {tuple(params[name].shape)} (another number of ways?)"
                )
        names = label_free_names(algorithm, header.adapted_names)
        if not names:
            raise DistmetaError(
                f"warm_start: the knowledge base keeps only the head's adaptation ({', '.join(header.adapted_names)}), "
                f"whose rows follow each stored task's label order: nothing to warm-start a classifier from"
            )
        delta = self.knowledge.fitted_warm_start_delta(
            self._embedding(algorithm, params, x, y), support_loss_of(algorithm, params, x, y), neighbours, names=names
        )
        return {**params, **{name: params[name] + value.to(params[name]) for name, value in delta.items()}}

    def _adapt(self, algorithm, params: Params, x, y, steps: int) -> Params:
        adapted = algorithm.adapt(params, x, y, steps, differentiable=False)
        return {name: value.detach() for name, value in adapted.items()}


def _numbers(item) -> bool:
    """Whether `item` (the first of a list) is a number or a row of numbers, not a drawing."""
    if isinstance(item, (int, float)):
        return True
    if isinstance(item, (list, tuple)):
        return bool(item) and _numbers(item[0])
    return False


def load(checkpoint: str | Path, device: str | None = None):
    """A Learner from a checkpoint file or a run directory (its latest checkpoint); for a
    learned-optimiser run, a `TrainedOptimizer` (`.optimizer(model.parameters())`).

    `device`: cpu, cuda or auto; None: the checkpoint's `train.device` where this machine
    has it, else the CPU (a GPU-trained checkpoint runs on a laptop as it is). A learned
    optimiser follows the parameters it is given to their device instead.
    """
    payload = load_checkpoint(checkpoint)
    config = checkpoint_config(payload)
    if config.learns_update_rule:
        from distmeta.learned_optimizer_runs.trained import TrainedOptimizer

        return TrainedOptimizer(config, payload["meta_parameters"], payload["step"])
    chosen = resolve_device(device, field="device") if device else usable_device(config.train.device)[0]
    experiment = build_experiment(config, chosen, check_data=False)
    params = {name: value.to(experiment.device) for name, value in payload["meta_parameters"].items()}
    return Learner(experiment, params, payload["step"], as_path(run_folder_of(location(payload["path"]))))


def run_folder_of(checkpoint_file: Location) -> Location:
    """The run folder a checkpoint file belongs to: `<run>/checkpoints/step_*.pt` in one process,
    `<run>/checkpoint_*/checkpoints/step_*.pt` in Ray Train's folders (a local folder or a bucket's)."""
    folder = checkpoint_file.parent.parent
    if folder.name.startswith("checkpoint_"):
        return folder.parent
    return folder
