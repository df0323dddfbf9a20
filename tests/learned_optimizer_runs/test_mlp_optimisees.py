"""Sinusoid and Omniglot as optimisee families: from a config, meta-trained, then evaluated against
the tuned baselines on a wider optimisee; the few-shot sinusoid and Omniglot stay as they were."""

import json
import math

import pytest
import torch

from distmeta.cli import main
from distmeta.config import config_hash, load_config
from distmeta.errors import ConfigError
from distmeta.learned_optimizer_runs.settings import optimisee_family
from distmeta.tasks.omniglot_mlp import OmniglotMLPFamily
from distmeta.tasks.sinusoid_mlp import SinusoidMLPFamily
from distmeta.training.trainer import train
from tests.learned_optimizer_runs.conftest import TINY

SHORT = [override for override in TINY if not override.startswith("task.")]
"""TINY's learned LSTM and meta-training, without its quadratics."""
SINUSOID = [
    *SHORT,
    "task.name=sinusoid",
    "task.sinusoid_mlp.hidden_sizes=[8, 8]",
    "task.sinusoid_mlp.batch_size=5",
    "task.sinusoid_mlp.points=30",
    "task.sinusoid_mlp.eval_points=20",
]
OMNIGLOT = [
    *SHORT,
    "task.name=omniglot",
    "task.ways=3",
    "task.omniglot.synthetic=true",
    "task.omniglot.image_size=6",
    "task.omniglot_mlp.hidden=4",
    "task.omniglot_mlp.drawings=4",
    "task.omniglot_mlp.batch_size=6",
]


def test_a_learned_optimizer_on_sinusoid_or_omniglot_gets_their_optimisee_families():
    sinusoid = optimisee_family(load_config(None, SINUSOID), "test", width=2)
    assert isinstance(sinusoid, SinusoidMLPFamily) and sinusoid.hidden_sizes == (16, 16) and sinusoid.split == "test"
    omniglot = optimisee_family(load_config(None, OMNIGLOT), "train")
    assert isinstance(omniglot, OmniglotMLPFamily) and (omniglot.ways, omniglot.images, omniglot.pixels) == (3, 12, 36)
    for config in (load_config(None, SINUSOID), load_config(None, OMNIGLOT)):
        assert config.metric == "loss" and not config.is_classification and config.model_name == "lstm"


def test_the_few_shot_sinusoid_and_omniglot_are_unchanged_and_refuse_the_optimisee_sections():
    assert load_config(None, []).metric == "mse"
    omniglot = load_config(None, ["task.name=omniglot", "task.omniglot.synthetic=true"])
    assert omniglot.is_classification and omniglot.model_name == "conv4"
    with pytest.raises(ConfigError) as error:
        load_config(None, ["task.sinusoid_mlp.batch_size=5"])
    assert error.value.field == "task.sinusoid_mlp" and "maml on sinusoid does not" in str(error.value)
    with pytest.raises(ConfigError) as error:
        load_config(None, [*SINUSOID, "task.omniglot_mlp.hidden=8"])
    assert error.value.field == "task.omniglot_mlp"


def test_other_optimisee_sizes_change_what_is_learned_so_a_run_is_not_resumed_with_them():
    for overrides, changed in ((SINUSOID, "task.sinusoid_mlp.points=31"), (OMNIGLOT, "task.omniglot_mlp.drawings=5")):
        assert config_hash(load_config(None, overrides)) != config_hash(load_config(None, [*overrides, changed]))


@pytest.mark.parametrize(
    "override, field",
    [
        ("task.sinusoid_mlp.hidden_sizes=[]", "task.sinusoid_mlp.hidden_sizes"),
        ("task.sinusoid_mlp.hidden_sizes=[8, 0]", "task.sinusoid_mlp.hidden_sizes[1]"),
        ("task.sinusoid_mlp.points=0", "task.sinusoid_mlp.points"),
        ("task.omniglot_mlp.batch_size=0", "task.omniglot_mlp.batch_size"),
        ("task.omniglot.roots=[x.zip]", "task.omniglot_mlp.drawings"),
    ],
)
def test_a_bad_optimisee_setting_is_refused_naming_its_field(override, field):
    base = OMNIGLOT if override.startswith("task.omniglot") else SINUSOID
    overrides = [*base, override]
    if override.startswith("task.omniglot.roots"):  # real data: 20 drawings of each character at most
        overrides = [o for o in overrides if "synthetic" not in o] + ["task.omniglot_mlp.drawings=21"]
    with pytest.raises(ConfigError) as error:
        load_config(None, overrides)
    assert error.value.field == field


def test_the_benchmark_configs_load_as_learned_lstms_on_their_optimisees():
    sinusoid = load_config("benchmarks/configs/sinusoid_lstm.yaml")
    omniglot = load_config("benchmarks/configs/omniglot_lstm.yaml")
    assert (sinusoid.task.name, omniglot.task.name) == ("sinusoid", "omniglot")
    assert sinusoid.learns_update_rule and omniglot.learns_update_rule and omniglot.task.omniglot.image_size == 14
    for config in (sinusoid, omniglot):
        section = config.algorithm.learned_optimizer
        assert section.eval_steps == 10 * section.unroll_length


@pytest.mark.parametrize(
    "overrides, wider",
    [(SINUSOID, "task.sinusoid_mlp.hidden_sizes=[16, 16]"), (OMNIGLOT, "task.omniglot_mlp.hidden=8")],
    ids=["sinusoid", "omniglot"],
)
def test_meta_training_runs_and_eval_compares_with_the_tuned_baselines_on_a_wider_optimisee(
    overrides, wider, tmp_path, capsys
):
    config = load_config(None, [*overrides, f"train.run_dir={tmp_path / 'run'}"])
    result = train(config, print_fn=lambda *_: None, final_eval=False)
    assert result.steps == 4 and all(torch.isfinite(value).all() for value in result.meta_params.values())
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logged] == [2, 4] and all(math.isfinite(e["meta_loss"]) for e in logged)
    wide = tmp_path / "wide.json"
    assert main(["eval", str(tmp_path / "run"), "--set", wider, "--json", str(wide)]) == 0
    record = json.loads(wide.read_text())
    assert list(record["results"]) == ["learned lstm", "sgd", "momentum", "rmsprop", "adam"]
    assert record["steps"] == 12  # eval_steps: twice the unroll here, 10x in the benchmark configs
    for entry in record["results"].values():
        assert len(entry["mean_curve"]) == 13 and all(math.isfinite(loss) for loss in entry["final_losses"])
    assert "adam" in capsys.readouterr().out
