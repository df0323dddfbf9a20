"""An `Experiment`: the pieces a config describes, built and checked once.

The trainer, the evaluator, the Python API (and the Ray workers later) all
start from here, so that a config means the same thing everywhere. Building it
builds the training tasks, so bad data fails here, before any step runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from distmeta.algorithms import MetaAlgorithm, Params, build_algorithm
from distmeta.compilation import MetaGradientRunner
from distmeta.config import Config
from distmeta.determinism import set_determinism
from distmeta.devices import CPU, resolve_device
from distmeta.execution import resolve_vectorize
from distmeta.models import TwoPartModel, build_model, initial_parameters
from distmeta.tasks import SPLITS, TaskDistribution, build_task_distribution


@dataclass
class Experiment:
    config: Config
    model: TwoPartModel
    algorithm: MetaAlgorithm
    device: torch.device
    strategy: str
    """vmap or loop: how the inner loops of a task batch run."""
    strategy_reason: str
    output_size: int
    meta_gradient: MetaGradientRunner
    """A rank's meta-gradient of a batch, compiled or not (`train.compile`)."""
    _distributions: dict[str, TaskDistribution] = field(default_factory=dict)
    _algorithms_for_ways: dict[int, MetaAlgorithm] = field(default_factory=dict)

    def tasks(self, split: str) -> TaskDistribution:
        """The task distribution of `split`, built on first use."""
        if split not in self._distributions:
            self._distributions[split] = build_task_distribution(self.config, split)
        return self._distributions[split]

    def algorithm_for(self, split: str, meta_params: Params) -> tuple[MetaAlgorithm, Params]:
        """The algorithm and meta-parameters for the tasks of `split`: meta-training tasks may
        have more classes (`task.train_ways`) than the validation and test tasks (`task.ways`)."""
        if not self.config.is_classification:
            return self.algorithm, meta_params
        return self.for_ways(self.config.task.ways_of(split), meta_params)

    def for_ways(self, ways: int, meta_params: Params) -> tuple[MetaAlgorithm, Params]:
        """The algorithm and meta-parameters for tasks of `ways` classes: the trained ones when they
        have as many, else an algorithm built on first use and `meta_parameters_for_ways`."""
        if ways == self.output_size:
            return self.algorithm, meta_params
        if ways not in self._algorithms_for_ways:
            model = build_model(self.config, ways, self.config.task.omniglot.image_size).to(self.device)
            self._algorithms_for_ways[ways] = build_algorithm(self.config.algorithm, model, True, ways)
        return self._algorithms_for_ways[ways], self.algorithm.meta_parameters_for_ways(meta_params, ways)

    @property
    def vmap_chunk_size(self) -> int | None:
        """Tasks vmap runs at once (None: the whole batch), from `train.vmap_chunk_size`."""
        return self.config.train.vmap_chunk_size or None

    def initial_meta_parameters(self) -> Params:
        """Drawn on the CPU from the seed, then moved: a GPU run starts from the weights a
        CPU run with the same seed starts from (the CUDA RNG draws other numbers)."""
        params = self.algorithm.init_meta_parameters(
            initial_parameters(self._cpu_model(), self.config.seed), self.config.seed
        )
        return {name: value.to(self.device) for name, value in params.items()}

    def _cpu_model(self) -> TwoPartModel:
        if self.device.type == "cpu":
            return self.model
        return build_model(self.config, self.output_size, self.config.task.omniglot.image_size)


def driver_experiment(config: Config) -> Experiment:
    """The experiment of a distributed run's driver: config and every split's data checked,
    on the CPU, so that the driver never opens a CUDA context (see `distmeta.devices`)."""
    return build_experiment(config, CPU)


def build_experiment(config: Config, device: torch.device | None = None, check_data: bool = True) -> Experiment:
    """Build model, algorithm and (when `check_data`) every task split, so bad data fails now.

    Without `check_data` no data is read: enough to use a checkpoint on new tasks.
    """
    device = device or resolve_device(config.train.device)
    set_determinism(config.train.deterministic)
    # the model is built for the meta-training tasks; `Experiment.for_ways` serves the others
    output_size = config.task.ways_of("train") if config.is_classification else 1
    model = build_model(config, output_size, config.task.omniglot.image_size).to(device)
    algorithm = build_algorithm(config.algorithm, model, config.is_classification, output_size)
    strategy, reason = resolve_vectorize(config.train.vectorize, config.model_name, device)
    meta_gradient = MetaGradientRunner(
        algorithm,
        strategy,
        config.train.vmap_chunk_size or None,
        config.train.compile,
        (config.model_name, strategy, device.type),
    )
    experiment = Experiment(config, model, algorithm, device, strategy, reason, output_size, meta_gradient)
    if check_data:
        for split in SPLITS:
            experiment.tasks(split)
    return experiment
