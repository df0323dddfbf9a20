"""Typed run configuration: dataclasses with their defaults, loaded from YAML.

Every default lives here and nowhere else. `load_config` reads a YAML file,
applies `--set key=value` overrides and validates the result once; any problem
raises `ConfigError` naming the dotted field (`algorithm.inner_lr`, ...).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from distmeta.errors import ConfigError
from distmeta.storage import Location, location

TASKS = ("sinusoid", "multimodal", "omniglot", "quadratic", "digits")
OPTIMISEE_TASKS = ("quadratic", "digits", "sinusoid", "omniglot")
"""Task families a learned optimiser (`algorithm.name: learned_optimizer`) is meta-trained on,
and the only tasks it runs on: with it, sinusoid and omniglot are optimisee families (an MLP
trained on one sinusoid, or on one N-way task's images), not few-shot tasks."""
OPTIMISEE_ONLY_TASKS = ("quadratic", "digits")
"""Optimisee families that are nothing else: no other algorithm runs on them."""
LEARNED_OPTIMIZER = "learned_optimizer"
MODELS = ("auto", "mlp", "conv4")
VECTORIZE = ("auto", "vmap", "loop")
COMPILE = ("auto", "on", "off")
PREFETCH = ("auto", "on", "off")
ON_OFF_FIELDS = ("train.compile", "train.prefetch")
"""String fields whose values include on and off, which YAML reads as booleans."""
META_OPTIMIZERS = ("adam", "sgd")
META_LR_SCHEDULES = ("constant", "cosine")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class OmniglotConfig:
    roots: tuple[str, ...] = ()
    """Omniglot folders or zips in the official layout `<root>/<Alphabet>/characterNN/*.png`."""
    cache_dir: str = "~/.cache/distmeta"
    """Where the decoded Arrow file is written once and memory-mapped afterwards."""
    image_size: int = 28
    """Images are resized to image_size x image_size (28 in the MAML and ProtoNets papers)."""
    rotations: bool = True
    """Use the four 90-degree rotations of each character as distinct classes."""
    split_seed: int = 0
    """Seed of the split of alphabets into meta-train, meta-validation and meta-test."""
    val_fraction: float = 0.15
    """Fraction of alphabets held out for meta-validation (at least one)."""
    test_fraction: float = 0.25
    """Fraction of alphabets held out for meta-test (at least one)."""
    synthetic: bool = False
    """Random images of Omniglot's shapes instead of the data (no roots): for measuring
    speed without the dataset, as `distmeta bench --task omniglot` does when given no roots."""


@dataclass(frozen=True)
class QuadraticConfig:
    """10-d quadratics ||W theta - y||^2 (Andrychowicz et al.'s first experiment)."""

    dimensions: int = 10
    functions: int = 128
    """Functions per task, whose mean loss is the task's loss."""
    init_std: float = 0.01
    """Standard deviation of the starting theta."""
    entries: str = "normal"
    """normal: W, y ~ N(0, 1); uniform: W, y ~ U[0, 1] (learning-to-learn's own problem)."""


@dataclass(frozen=True)
class DigitsConfig:
    """A 64-hidden-10 sigmoid MLP on scikit-learn's bundled 8x8 digits, in minibatches."""

    hidden: int = 20
    batch_size: int = 128


@dataclass(frozen=True)
class SinusoidMLPConfig:
    """learned_optimizer on sinusoid: the MAML MLP (ReLU) fitting one sinusoid per task, in minibatches."""

    hidden_sizes: tuple[int, ...] = (40, 40)
    batch_size: int = 10
    """Training points per optimisee step."""
    points: int = 1000
    """Training points per task: step t trains on points t*B .. t*B + B - 1, cycling."""
    eval_points: int = 100
    """Held-out points per task, on which the loss an evaluation reports is measured."""


@dataclass(frozen=True)
class OmniglotMLPConfig:
    """learned_optimizer on omniglot: a pixels-hidden-ways sigmoid MLP on one task.ways-way task of
    Omniglot images (task.omniglot: data, split, and image_size, the downsampled size), in minibatches."""

    hidden: int = 20
    drawings: int = 20
    """Drawings per class of a task (Omniglot has 20 per character): a task's images."""
    batch_size: int = 32


@dataclass(frozen=True)
class TaskConfig:
    name: str = "sinusoid"
    """Task family: sinusoid or multimodal (regression, built in), omniglot (N-way K-shot), or an
    optimisee family for a learned optimiser: quadratic, digits, sinusoid or omniglot."""
    ways: int = 5
    """Classes per task (classification only)."""
    shots: int = 10
    """Support examples per class; for regression, support points per task (K)."""
    query_shots: int = 10
    """Query examples per class; for regression, query points per task."""
    train_ways: int = 0
    """Classes per meta-training task (0: `ways`; classification only). Wider episodes than the
    test's train a better embedding for Prototypical Networks (Snell et al. 2017 meta-trained
    1-shot on 60-way episodes). Validation, test and `distmeta eval` tasks keep `ways`."""
    omniglot: OmniglotConfig = field(default_factory=OmniglotConfig)
    quadratic: QuadraticConfig = field(default_factory=QuadraticConfig)
    digits: DigitsConfig = field(default_factory=DigitsConfig)
    sinusoid_mlp: SinusoidMLPConfig = field(default_factory=SinusoidMLPConfig)
    omniglot_mlp: OmniglotMLPConfig = field(default_factory=OmniglotMLPConfig)
    modes: tuple[str, ...] = ("sinusoid", "linear", "quadratic", "tanh", "abs")
    """multimodal only: the function families tasks are drawn from, uniformly (sinusoid,
    linear, quadratic, tanh, abs; the MMAML paper's 2 modes are the first two, 3 the first three)."""
    noise_std: float = 0.3
    """multimodal only: std of the Gaussian noise on every output (0.3 in the MMAML paper)."""

    def ways_of(self, split: str) -> int:
        """Classes per task of `split`: `train_ways` (when set) for meta-training, else `ways`."""
        if split == "train" and self.train_ways:
            return self.train_ways
        return self.ways


@dataclass(frozen=True)
class ModelConfig:
    name: str = "auto"
    """mlp, conv4, or auto: mlp for regression, conv4 for images."""
    hidden_sizes: tuple[int, ...] = (40, 40)
    """Hidden layer widths of the MLP (1-40-40-1 in the MAML paper)."""
    channels: int = 64
    """Filters per conv layer of Conv4."""


@dataclass(frozen=True)
class LearnedOptimizerConfig:
    """How a learned optimiser (`algorithm.name: learned_optimizer`) is meta-trained and compared.

    Each of `train.meta_batch_size` persistent unrolls (an optimisee task trained by the
    rule) moves on by one truncation per meta-step and gives one estimate of the
    meta-gradient; `train.steps` meta-steps, at `train.meta_lr`.
    """

    rule: str = "lstm"
    """lstm (Andrychowicz et al.'s coordinate-wise LSTM) or mlp (learned_optimization's per-parameter MLP)."""
    estimator: str = "truncated_backprop"
    """truncated_backprop, es (antithetic ES) or pes (persistent ES)."""
    unroll_length: int = 100
    """Optimisee steps in a whole unroll, after which its task is replaced by a fresh one."""
    truncation_length: int = 20
    """Optimisee steps per meta-step: the steps each meta-gradient estimate covers."""
    meta_loss: str = "mean"
    """mean: the mean optimisee loss over the truncation; final: its last loss."""
    log_loss: bool = False
    """Meta-train on log(optimisee loss), so that late, small losses count as much as early ones."""
    pairs: int = 8
    """Antithetic pairs of es / pes per unroll."""
    sigma: float = 0.01
    """Standard deviation of the es / pes perturbations of the meta-parameters."""
    gradient_clip: float = 1.0
    """Global-norm clip of the meta-gradient (0: off)."""
    loss_clip: float = 1000.0
    """The optimisee loss the estimators see is clipped here (NaN counts as the clip)."""
    eval_tasks: int = 5
    """Held-out optimisee tasks `distmeta eval` trains with every optimiser (and validation with the rule)."""
    eval_steps: int = 0
    """Optimisee steps `distmeta eval` runs (0: 10 x unroll_length, a horizon meta-training never saw)."""
    tuning_tasks: int = 5
    """Meta-train tasks on which each hand-designed baseline's learning rate is picked from the grid."""


@dataclass(frozen=True)
class LEOConfig:
    """LEO (`algorithm.name: leo`): classifier weights decoded from per-class latent codes.

    The latent steps are `algorithm.inner_steps` (`test_inner_steps` at validation and test)
    from `algorithm.inner_lr` (both rates meta-learned per dimension). Defaults: the LEO
    authors' (google-deepmind/leo, config.py), except feature_run.
    """

    feature_run: str = ""
    """A distmeta run folder or checkpoint file (e.g. a protonet run) whose feature layers
    are used, frozen, as the feature extractor; they must fit this config's model. "": the
    model's own (randomly initialised) body, meta-trained along with LEO."""
    latent_size: int = 64
    """Dimensions of each class's latent code."""
    finetune_steps: int = 5
    """Steps on the decoded head weights in parameter space, after the latent steps."""
    finetune_lr: float = 0.001
    """Initial rate of the fine-tuning steps (meta-learned per feature dimension)."""
    kl_weight: float = 0.001
    """Weight of KL(latent distribution || N(0, I)) in the meta-loss (beta in the paper)."""
    encoder_penalty_weight: float = 1e-9
    """Weight of |adapted latent (held constant) - encoded latent|^2 (gamma in the paper)."""
    orthogonality_weight: float = 0.001
    """Weight of the penalty on correlated decoder rows (lambda_2 in the paper)."""
    head: str = "linear"
    """How the logits come from features e and each class's decoded vector w_k: linear (the
    paper's, e . w_k) or distance (-|e - w_k|^2: ProtoNets' classifier with w_k in the place of
    the prototype, which fits features meta-trained by a protonet run)."""


@dataclass(frozen=True)
class MMAMLConfig:
    """MMAML (`algorithm.name: mmaml`): the support-set encoder whose output modulates the network."""

    encoder: str = "set"
    """How a regression task's (x, y) pairs are encoded: set (a per-point MLP, mean over the
    points: the same embedding in any order) or lstm (the MMAML authors' regression encoder: a
    bidirectional two-layer LSTM of 40 units over the pairs in their order). Image tasks always
    use the convolutional encoder."""


@dataclass(frozen=True)
class AlgorithmConfig:
    name: str = "maml"
    """maml, fomaml, reptile, anil, metasgd, protonet, mmaml, alfa, protomaml or leo: a name in the
    algorithm registry (`distmeta.algorithms.ALGORITHMS`), which also checks the fields below for
    that algorithm; or learned_optimizer, which meta-trains an update rule on an optimisee task family."""
    inner_lr: float = 0.01
    """Inner-loop (adaptation) learning rate; Meta-SGD's initial per-parameter rate."""
    inner_steps: int = 1
    """Inner-loop steps during meta-training."""
    test_inner_steps: int = 10
    """Inner-loop steps at validation and meta-test time."""
    first_order: bool = False
    """Drop second-order terms of the meta-gradient (maml, anil, metasgd, mmaml, alfa, protomaml, leo);
    fomaml implies it."""
    inner_grad_clip: float = 0.0
    """Clamp each entry of an inner-loop gradient to [-this, this] before the step (0: off), at
    meta-training, validation and test alike; the MMAML authors' regression runs use 10
    (`--inner-loop-grad-clip 10`): without it a task with a huge support loss can send the
    meta-loss to 1e20."""
    inner_batch_size: int = 0
    """Reptile while meta-training: each inner step on its own minibatch of this many support
    examples, as in Nichol et al.; 0: every step on the whole support set. Adaptation at
    validation and test always uses the whole support set."""
    learned_optimizer: LearnedOptimizerConfig = field(default_factory=LearnedOptimizerConfig)
    """learned_optimizer only."""
    leo: LEOConfig = field(default_factory=LEOConfig)
    """leo only."""
    mmaml: MMAMLConfig = field(default_factory=MMAMLConfig)
    """mmaml only."""


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 10000
    """Meta-training steps (meta-optimiser updates)."""
    meta_batch_size: int = 25
    """Tasks per meta-step (the global meta-batch)."""
    meta_lr: float = 0.001
    """Learning rate of the meta-optimiser."""
    meta_optimizer: str = "adam"
    """adam or sgd."""
    meta_lr_schedule: str = "constant"
    """constant, or cosine: anneal meta_lr to 0 over `steps` (the rate is a function of the step alone)."""
    meta_grad_clip: float = 0.0
    """Rescale the mean meta-gradient to at most this global L2 norm before the meta-optimiser
    step (0: off). The MMAML authors' regression runs clip at 2 (their model and encoder each)."""
    log_every: int = 500
    """Steps between log lines and metrics records."""
    val_every: int = 2000
    """Steps between validations on held-out tasks (0: only at the end)."""
    val_tasks: int = 100
    """Tasks per validation."""
    stop_at_accuracy: float = 0.0
    """Stop at the first validation whose mean accuracy reaches this (0: off; classification only):
    time to an accuracy, with the checkpoint of the crossing as the run's last."""
    time_limit_minutes: float = 0.0
    """Stop at the first log interval after this many minutes of the training loop (validations
    included, start-up not), validating and checkpointing there (0: no limit)."""
    checkpoint_every: int = 2000
    """Steps between checkpoints (0: only at the end)."""
    vectorize: str = "auto"
    """How a task batch's inner loops run: vmap, loop, or auto (the faster per model and device)."""
    compile: str = "auto"
    """torch.compile a rank's meta-gradient: on, off, or auto (where measured to pay back its compile
    time within the run's steps; the run prints the figures)."""
    prefetch: str = "auto"
    """Draw the next step's tasks in a background thread while a step computes: on, off, or auto
    (on a GPU only; `distmeta.training.prefetch`). The tasks are the same either way."""
    vmap_chunk_size: int = 0
    """Tasks vmap runs at once (torch.func.vmap's chunk_size), bounding GPU memory; 0: all of them."""
    device: str = "auto"
    """cpu, cuda, or auto. A Ray worker uses the GPU Ray gave it (auto, cuda) or the CPU (auto
    without a GPU, cpu); in one process auto is cuda when torch sees a GPU."""
    deterministic: bool = False
    """Bit-identical reruns on a GPU too: TF32 off, deterministic cuDNN and torch algorithms
    (slower; an op without a deterministic implementation stops the run, named)."""
    knowledge_every: int = 0
    """Steps between samples of the step's tasks written to the run's knowledge base (0: none;
    `distmeta kb build` fills it after training either way)."""
    knowledge_tasks: int = 2
    """Tasks of each sampled step recorded: the meta-batch's first ones, on whichever worker they ran."""
    knowledge_store_steps: int = 100
    """Steps of each recorded task's stored adaptation (on the whole task), as `kb build --store-steps`."""
    run_dir: str = ""
    """Where metrics, checkpoints and the summary go ("": runs/<task>-<algorithm>-<time>).
    Training again with the same run_dir resumes from its latest checkpoint."""


@dataclass(frozen=True)
class EvalConfig:
    tasks: int = 600
    """Meta-test tasks; the papers report the mean over 600 with a 95% interval."""
    batch_size: int = 50
    """Tasks adapted at once during evaluation."""


@dataclass(frozen=True)
class Config:
    seed: int = 0
    """Run seed: with the split, the step and a task's index in its meta-batch it fixes every sampled
    task, whichever worker samples it."""
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def is_classification(self) -> bool:
        """Few-shot classification (a learned optimiser's runs are scored by their optimisee loss)."""
        return self.task.name == "omniglot" and not self.learns_update_rule

    @property
    def learns_update_rule(self) -> bool:
        """A learned-optimiser run: an update rule meta-trained on optimisee tasks, not an
        initialisation adapted to few-shot tasks (see `distmeta.learned_optimizer_runs`)."""
        return self.algorithm.name == LEARNED_OPTIMIZER

    @property
    def metric(self) -> str:
        """What a task's score is: accuracy (classification), mse (regression), or a learned
        optimiser's optimisee loss."""
        if self.learns_update_rule:
            return "loss"
        return "accuracy" if self.is_classification else "mse"

    @property
    def model_name(self) -> str:
        """The model actually built, with `auto` resolved (a learned optimiser's: its rule)."""
        if self.learns_update_rule:
            return self.algorithm.learned_optimizer.rule
        if self.model.name != "auto":
            return self.model.name
        return "conv4" if self.is_classification else "mlp"


# ---------------------------------------------------------------- loading


MAX_SEED = 2**63 - 1
"""Seeds are drawn from with numpy's SeedSequence and torch's generators: non-negative, 64-bit."""
OMNIGLOT_IMAGE_SIZE = 105
"""The side of Omniglot's images, in pixels."""
CONV4_MIN_IMAGE_SIZE = 16
"""Conv4's four 2x2 poolings leave a 16-pixel image 1 pixel wide."""


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Read `path` (YAML; None for the defaults), apply `key=value` overrides, validate."""
    raw: dict = {}
    if path is not None:
        raw = _read_yaml(location(path))  # a local file, or a bucket's (a search's best_config.yaml)
    for override in overrides:
        apply_override(raw, override)
    config = from_dict(raw)
    validate(config)
    return config


def from_dict(raw: dict) -> Config:
    """Build a Config from nested plain data; unknown keys and wrong types name the field."""
    return _build(Config, raw, prefix="")


def to_dict(config: Config) -> dict:
    """Plain nested data (lists, not tuples) that `from_dict` and YAML round-trip."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def save_config(config: Config, path: str | Path | Location) -> None:
    """Write `config` as YAML to a local path or a bucket's (see `distmeta.storage`)."""
    location(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


# Fields that change how a run is carried out or watched, not what it learns: a run
# may be resumed with other values (e.g. more steps, or on a GPU).
NOT_HASHED = (
    "train.run_dir",
    "train.steps",
    "train.log_every",
    "train.val_every",
    "train.val_tasks",
    "train.stop_at_accuracy",
    "train.time_limit_minutes",
    "train.checkpoint_every",
    "train.vectorize",
    "train.compile",
    "train.prefetch",
    "train.device",
    "train.vmap_chunk_size",
    "train.deterministic",
    "train.knowledge_every",
    "train.knowledge_tasks",
    "train.knowledge_store_steps",
    "algorithm.learned_optimizer.eval_tasks",
    "algorithm.learned_optimizer.eval_steps",
    "algorithm.learned_optimizer.tuning_tasks",
)


# Fields added after runs were checkpointed, with the value that means the behaviour from
# before them: hashed only when set otherwise, so that older checkpoints stay resumable.
HASHED_WHEN_SET = {
    "algorithm.inner_batch_size": 0,
    "algorithm.inner_grad_clip": 0.0,
    "train.meta_grad_clip": 0.0,
    "task.omniglot.synthetic": False,
    "algorithm.learned_optimizer": dataclasses.asdict(LearnedOptimizerConfig()),
    "algorithm.leo": dataclasses.asdict(LEOConfig()),
    "algorithm.leo.head": "linear",  # after its section: a section at its defaults goes whole first
    "algorithm.mmaml": dataclasses.asdict(MMAMLConfig()),
    "task.quadratic": dataclasses.asdict(QuadraticConfig()),
    "task.digits": dataclasses.asdict(DigitsConfig()),
    "task.sinusoid_mlp": json.loads(json.dumps(dataclasses.asdict(SinusoidMLPConfig()))),  # tuples as lists
    "task.omniglot_mlp": dataclasses.asdict(OmniglotMLPConfig()),
    "task.modes": ["sinusoid", "linear", "quadratic", "tanh", "abs"],
    "task.noise_std": 0.3,
    "task.train_ways": 0,
}


def config_hash(config: Config) -> str:
    """A short stable fingerprint of everything that changes what is learned."""
    data = to_dict(config)
    data.pop("eval")
    for name, old_behaviour in HASHED_WHEN_SET.items():  # first: a section at its defaults goes whole
        parent, key = _parent_of(data, name)
        if parent is not None and parent[key] == old_behaviour:
            parent.pop(key)
    for name in NOT_HASHED:
        parent, key = _parent_of(data, name)
        if parent is not None:
            parent.pop(key, None)
    canonical = json.dumps(data, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _parent_of(data: dict, name: str) -> tuple[dict | None, str]:
    """The dict holding the dotted field `name` in `data`, and its key (None: a section on the
    way is gone, e.g. one left out of the hash)."""
    *sections, key = name.split(".")
    parent: dict | None = data
    for section in sections:
        parent = parent.get(section) if isinstance(parent, dict) else None
    return parent, key


def replace(config: Config, **sections: dict) -> Config:
    """A copy with some fields of some sections changed: replace(c, train={"steps": 5})."""
    changed = {name: dataclasses.replace(getattr(config, name), **values) for name, values in sections.items()}
    new = dataclasses.replace(config, **changed)
    validate(new)
    return new


def _read_yaml(path: Location) -> dict:
    if not path.is_file():
        what = "is a folder, not a YAML file" if path.exists() else "does not exist"
        raise ConfigError("config", f"file {path} {what}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError("config", f"{path} is not valid YAML: {error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError("config", f"{path} is not text (UTF-8): {error.reason} at byte {error.start}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError("config", f"{path} must hold a mapping of sections, not {type(raw).__name__}")
    return raw


def apply_override(raw: dict, override: str) -> None:
    """Set `a.b.c=value` in the nested dict; the value is parsed as YAML (1e-3, true, [1, 2])."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError("--set", f"expected key=value, got {override!r}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    parts = key.strip().split(".")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(".".join(parts[: depth + 1]), "is a value, not a section")
        node = child
    node[parts[-1]] = value


def _build(cls, raw: Any, prefix: str):
    if not isinstance(raw, dict):
        raise ConfigError(prefix.rstrip(".") or "config", f"expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(prefix + str(unknown[0]), f"unknown key (known: {', '.join(sorted(known))})")
    values = {}
    for name, value in raw.items():
        values[name] = _coerce(hints[name], value, prefix + name)
    return cls(**values)


def _coerce(hint, value: Any, name: str):
    """Check `value` against a field's type; ints are accepted for floats, lists for tuples."""
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, name + ".")
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        inner = [arg for arg in typing.get_args(hint) if arg is not type(None)][0]
        return _coerce(inner, value, name)
    if origin is tuple:
        if isinstance(value, (str, int, float)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(name, f"expected a list, got {value!r}")
        item_type = typing.get_args(hint)[0]
        return tuple(_coerce(item_type, item, f"{name}[{i}]") for i, item in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(name, f"expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(name, f"expected an integer, got {value!r}")
        return value
    if hint is float:
        value = yaml_number(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(name, f"expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if name in ON_OFF_FIELDS and isinstance(value, bool):
            return "on" if value else "off"  # YAML 1.1 reads a bare on / off as true / false
        if not isinstance(value, str):
            raise ConfigError(name, f"expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint} for {name}")  # a bug in this module


def yaml_number(value: Any) -> Any:
    """`value`, or the float it spells when PyYAML left it a string: PyYAML reads `1e-3` (no dot)
    as a string, and people write rates that way all the time."""
    if not isinstance(value, str):
        return value
    try:
        return float(value)
    except ValueError:
        return value


# ---------------------------------------------------------------- validation


def validate(config: Config) -> None:
    """Raise ConfigError for the first invalid value, naming its field."""
    _check_choice("task.name", config.task.name, TASKS)
    _check_choice("model.name", config.model.name, MODELS)
    _check_algorithm_name(config)
    _check_choice("train.vectorize", config.train.vectorize, VECTORIZE)
    _check_choice("train.compile", config.train.compile, COMPILE)
    _check_choice("train.prefetch", config.train.prefetch, PREFETCH)
    _check_choice("train.meta_optimizer", config.train.meta_optimizer, META_OPTIMIZERS)
    _check_choice("train.meta_lr_schedule", config.train.meta_lr_schedule, META_LR_SCHEDULES)
    _check_choice("train.device", config.train.device, DEVICES)

    if not 0 <= config.seed <= MAX_SEED:
        raise ConfigError("seed", f"must be between 0 and 2**63 - 1, got {config.seed}")
    _check_positive("task.ways", config.task.ways)
    _check_positive("task.shots", config.task.shots)
    _check_positive("task.query_shots", config.task.query_shots)
    _check_non_negative("task.train_ways", config.task.train_ways)
    _check_positive("model.channels", config.model.channels)
    for i, width in enumerate(config.model.hidden_sizes):
        _check_positive(f"model.hidden_sizes[{i}]", width)
    _check_positive("algorithm.inner_lr", config.algorithm.inner_lr)
    _check_non_negative("algorithm.inner_steps", config.algorithm.inner_steps)
    _check_non_negative("algorithm.test_inner_steps", config.algorithm.test_inner_steps)
    _check_non_negative("algorithm.inner_grad_clip", config.algorithm.inner_grad_clip)
    _check_positive("train.steps", config.train.steps)
    _check_positive("train.meta_batch_size", config.train.meta_batch_size)
    _check_positive("train.meta_lr", config.train.meta_lr)
    _check_non_negative("train.meta_grad_clip", config.train.meta_grad_clip)
    _check_positive("train.log_every", config.train.log_every)
    _check_non_negative("train.val_every", config.train.val_every)
    _check_positive("train.val_tasks", config.train.val_tasks)
    _check_non_negative("train.checkpoint_every", config.train.checkpoint_every)
    _check_non_negative("train.vmap_chunk_size", config.train.vmap_chunk_size)
    _check_non_negative("train.knowledge_every", config.train.knowledge_every)
    _check_positive("train.knowledge_tasks", config.train.knowledge_tasks)
    _check_non_negative("train.knowledge_store_steps", config.train.knowledge_store_steps)
    if config.train.knowledge_every and config.train.knowledge_tasks > config.train.meta_batch_size:
        raise ConfigError(
            "train.knowledge_tasks",
            f"records the first tasks of each sampled meta-batch: at most "
            f"train.meta_batch_size ({config.train.meta_batch_size}), got "
            f"{config.train.knowledge_tasks}",
        )
    _check_stop_rules(config)
    _check_positive("eval.tasks", config.eval.tasks)
    _check_positive("eval.batch_size", config.eval.batch_size)
    _check_omniglot(config)
    _check_multimodal(config)
    _check_combinations(config)


def _check_stop_rules(config: Config) -> None:
    train = config.train
    if not (0.0 <= train.stop_at_accuracy <= 1.0):
        raise ConfigError("train.stop_at_accuracy", f"must be between 0 and 1 (0: off), got {train.stop_at_accuracy}")
    if train.stop_at_accuracy and not config.is_classification:
        raise ConfigError(
            "train.stop_at_accuracy", f"needs a classification task; {config.task.name} is scored by {config.metric}"
        )
    if train.stop_at_accuracy and not train.val_every:
        raise ConfigError("train.stop_at_accuracy", "needs validations during training: set train.val_every")
    if not (train.time_limit_minutes >= 0) or not math.isfinite(train.time_limit_minutes):
        raise ConfigError(
            "train.time_limit_minutes", f"must be zero (no limit) or more, got {train.time_limit_minutes}"
        )
    if train.meta_grad_clip and config.learns_update_rule:
        raise ConfigError(
            "train.meta_grad_clip",
            "learned optimiser runs clip their meta-gradient by algorithm.learned_optimizer.gradient_clip: set that",
        )


def _check_omniglot(config: Config) -> None:
    omniglot = config.task.omniglot
    _check_positive("task.omniglot.image_size", omniglot.image_size)
    if omniglot.image_size > OMNIGLOT_IMAGE_SIZE:
        raise ConfigError(
            "task.omniglot.image_size",
            f"at most {OMNIGLOT_IMAGE_SIZE}, the size of Omniglot's images (larger only upsamples), "
            f"got {omniglot.image_size}",
        )
    if config.task.name == "omniglot" and config.model_name == "conv4" and omniglot.image_size < CONV4_MIN_IMAGE_SIZE:
        raise ConfigError(
            "task.omniglot.image_size",
            f"conv4 halves the image four times: it needs at least {CONV4_MIN_IMAGE_SIZE}, got {omniglot.image_size}",
        )
    for name in ("val_fraction", "test_fraction"):
        value = getattr(omniglot, name)
        if not 0.0 < value < 1.0:
            raise ConfigError(f"task.omniglot.{name}", f"must be between 0 and 1, got {value}")
    if omniglot.val_fraction + omniglot.test_fraction >= 1.0:
        raise ConfigError(
            "task.omniglot.test_fraction", "val_fraction + test_fraction must leave alphabets to train on"
        )
    if omniglot.synthetic and omniglot.roots:
        raise ConfigError(
            "task.omniglot.synthetic", "random images replace the data: give roots or synthetic: true, not both"
        )
    if config.task.name == "omniglot" and not omniglot.roots and not omniglot.synthetic:
        raise ConfigError(
            "task.omniglot.roots",
            "give at least one Omniglot folder or zip (or, to measure speed "
            "without the data, task.omniglot.synthetic=true)",
        )


def _check_multimodal(config: Config) -> None:
    from distmeta.tasks.multimodal import MODES  # here, not above: the task module imports torch

    if not config.task.modes:
        raise ConfigError("task.modes", f"give at least one mode (from {', '.join(MODES)})")
    for i, mode in enumerate(config.task.modes):
        _check_choice(f"task.modes[{i}]", mode, MODES)
    if len(set(config.task.modes)) != len(config.task.modes):
        raise ConfigError("task.modes", f"names a mode twice: {list(config.task.modes)}")
    if not (config.task.noise_std >= 0) or not math.isfinite(config.task.noise_std):
        raise ConfigError("task.noise_std", f"must be zero or more, got {config.task.noise_std}")


def _check_combinations(config: Config) -> None:
    if config.is_classification:
        # one class is no classification: every prediction is right, and nothing is learned
        for field, ways in (("task.ways", config.task.ways), ("task.train_ways", config.task.train_ways or 2)):
            if ways < 2:
                raise ConfigError(field, f"a classification task needs at least 2 classes, got {ways}")
    if config.task.train_ways and not config.is_classification:
        raise ConfigError(
            "task.train_ways",
            f"sets the classes of few-shot classification tasks; {config.task.name} with "
            f"algorithm {config.algorithm.name} has none (leave it 0)",
        )
    if config.learns_update_rule or config.task.name in OPTIMISEE_ONLY_TASKS:
        _check_algorithm(config)
        return
    model = config.model_name
    if config.is_classification and model == "mlp":
        raise ConfigError("model.name", f"mlp takes 1-d inputs; {config.task.name} needs conv4")
    if not config.is_classification and model == "conv4":
        raise ConfigError("model.name", f"conv4 takes images; {config.task.name} needs mlp")
    _check_algorithm(config)


def _check_algorithm_name(config: Config) -> None:
    from distmeta.algorithms import ALGORITHMS  # here, not above: the registry imports torch and the models

    _check_choice("algorithm.name", config.algorithm.name, (*ALGORITHMS, LEARNED_OPTIMIZER))


def _check_algorithm(config: Config) -> None:
    """The fields of the algorithm section, as the algorithm's registry entry checks them
    (a learned optimiser's, and its pairing with an optimisee task, as its run checks them)."""
    from distmeta.algorithms import check_algorithm_settings
    from distmeta.learned_optimizer_runs.settings import check_learned_optimizer_config

    check_learned_optimizer_config(config)
    if not config.learns_update_rule:
        check_algorithm_settings(config.algorithm, config.is_classification, config.task.name)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(name, f"unknown value {value!r} (choose from {', '.join(choices)})")


def _check_positive(name: str, value: float) -> None:
    if not (value > 0) or (isinstance(value, float) and not math.isfinite(value)):
        raise ConfigError(name, f"must be positive, got {value}")


def _check_non_negative(name: str, value: float) -> None:
    if not (value >= 0) or (isinstance(value, float) and not math.isfinite(value)):
        raise ConfigError(name, f"must be zero or more, got {value}")


def default_run_dir(config: Config) -> str:
    """A run's folder when none is given: runs/<task>-<algorithm>-<time>."""
    return f"runs/{config.task.name}-{config.algorithm.name}-{datetime.now():%Y%m%d-%H%M%S}"


def default_search_name(config: Config) -> str:
    """A search's folder name when none is given: tune-<task>-<algorithm>-<time>."""
    return f"tune-{config.task.name}-{config.algorithm.name}-{datetime.now():%Y%m%d-%H%M%S}"
