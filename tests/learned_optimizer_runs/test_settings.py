"""A learned-optimiser config: its defaults, and bad values refused naming their field."""

import dataclasses

import pytest

from distmeta.config import LearnedOptimizerConfig, load_config
from distmeta.errors import ConfigError
from distmeta.learned_optimizer_runs.settings import meta_training_settings
from distmeta.learned_optimizer_runs.training import build_run
from distmeta.learned_optimizers.meta_training import MetaTrainingSettings
from tests.learned_optimizer_runs.conftest import TINY

LEARNED = ["task.name=quadratic", "algorithm.name=learned_optimizer"]


def test_the_config_defaults_are_the_meta_trainers_defaults():
    library = MetaTrainingSettings()
    config = LearnedOptimizerConfig()
    shared = {f.name for f in dataclasses.fields(MetaTrainingSettings)} & {f.name for f in dataclasses.fields(config)}
    assert shared >= {"estimator", "unroll_length", "truncation_length", "pairs", "sigma", "loss_clip"}
    assert {name: getattr(config, name) for name in shared} == {name: getattr(library, name) for name in shared}
    assert config.rule == library.optimizer


def test_the_config_maps_onto_the_meta_training_settings():
    config = load_config(None, [*TINY, "algorithm.learned_optimizer.estimator=pes", "seed=7"])
    settings = meta_training_settings(config)
    assert (
        settings.optimizer,
        settings.estimator,
        settings.unrolls,
        settings.meta_steps,
        settings.meta_lr,
        settings.seed,
        settings.truncation_length,
    ) == ("lstm", "pes", 3, 4, 0.01, 7, 2)


def test_the_quadratic_benchmark_config_loads_and_pairs_a_learned_lstm_with_quadratics():
    config = load_config("benchmarks/configs/quadratic_lstm.yaml")
    assert config.learns_update_rule and config.task.name == "quadratic" and config.model_name == "lstm"
    assert config.metric == "loss" and not config.is_classification


@pytest.mark.parametrize(
    "override, field",
    [
        ("algorithm.learned_optimizer.estimator=adam", "algorithm.learned_optimizer.estimator"),
        ("algorithm.learned_optimizer.rule=gru", "algorithm.learned_optimizer.rule"),
        ("algorithm.learned_optimizer.truncation_length=200", "algorithm.learned_optimizer.truncation_length"),
        ("algorithm.learned_optimizer.sigma=0", "algorithm.learned_optimizer.sigma"),
        ("algorithm.learned_optimizer.pairs=0", "algorithm.learned_optimizer.pairs"),
        ("algorithm.learned_optimizer.meta_loss=max", "algorithm.learned_optimizer.meta_loss"),
        ("algorithm.learned_optimizer.gradient_clip=-1", "algorithm.learned_optimizer.gradient_clip"),
        ("algorithm.learned_optimizer.eval_tasks=0", "algorithm.learned_optimizer.eval_tasks"),
        ("algorithm.learned_optimizer.unrolls=2", "algorithm.learned_optimizer.unrolls"),
        ("algorithm.inner_lr=0.5", "algorithm.inner_lr"),
        ("task.name=multimodal", "task.name"),
        ("task.quadratic.entries=cauchy", "task.quadratic.entries"),
        ("task.digits.hidden=0", "task.digits.hidden"),
        ("train.device=cuda", "train.device"),
        ("train.vectorize=loop", "train.vectorize"),  # few-shot inner loops' settings: read by nothing here
        ("train.compile=on", "train.compile"),
        ("train.vmap_chunk_size=4", "train.vmap_chunk_size"),
    ],
)
def test_a_bad_learned_optimizer_setting_is_refused_naming_its_field(override, field):
    with pytest.raises(ConfigError) as error:
        load_config(None, [*LEARNED, override])
    assert error.value.field == field


def test_optimisee_tasks_need_a_learned_optimizer_and_other_algorithms_refuse_its_section():
    with pytest.raises(ConfigError, match="optimisees") as error:
        load_config(None, ["task.name=digits", "algorithm.name=maml"])
    assert error.value.field == "algorithm.name"
    with pytest.raises(ConfigError) as error:
        load_config(None, ["algorithm.learned_optimizer.rule=mlp"])
    assert error.value.field == "algorithm.learned_optimizer"


def test_an_optimisee_whose_loss_is_not_finite_at_step_0_is_refused_before_training():
    config = load_config(None, [*TINY, "task.quadratic.init_std=1e30"])
    with pytest.raises(ConfigError, match="before any update") as error:
        build_run(config)
    assert error.value.field == "task.quadratic"


def test_evaluation_settings_may_change_on_resume_but_what_is_learned_may_not():
    from distmeta.config import config_hash

    base = load_config(None, TINY)
    assert config_hash(
        load_config(
            None, [*TINY, "algorithm.learned_optimizer.eval_steps=50", "algorithm.learned_optimizer.tuning_tasks=3"]
        )
    ) == config_hash(base)
    assert config_hash(load_config(None, [*TINY, "algorithm.learned_optimizer.sigma=0.1"])) != config_hash(base)
