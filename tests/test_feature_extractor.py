"""LEO on the frozen feature layers of a distmeta run: read once, kept frozen, carried in its
checkpoints, refused with the field named when they do not fit; and LEO's runs as any run's."""

import json

import pytest
import torch

import distmeta
from distmeta.config import load_config
from distmeta.errors import ConfigError
from distmeta.execution import batch_meta_gradient
from distmeta.experiment import build_experiment
from distmeta.runtime.collective import share_of_meta_batch
from distmeta.training.trainer import meta_batch, train
from distmeta.tuning.space import parse_space, with_values

SYNTHETIC = [
    "task.name=omniglot",
    "task.omniglot.synthetic=true",
    "task.ways=3",
    "task.query_shots=2",
    "model.channels=8",
    "train.meta_batch_size=2",
    "train.val_tasks=3",
    "train.log_every=2",
    "train.val_every=2",
    "train.checkpoint_every=2",
]
LEO = [
    "algorithm.name=leo",
    "algorithm.inner_lr=1.0",
    "algorithm.test_inner_steps=2",
    "algorithm.leo.latent_size=8",
    "algorithm.leo.finetune_steps=2",
]


def run(run_dir, steps, *overrides):
    config = load_config(None, [*SYNTHETIC, *overrides, f"train.run_dir={run_dir}", f"train.steps={steps}"])
    return train(config, print_fn=lambda *_: None, final_eval=False)


@pytest.fixture(scope="module")
def protonet_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("protonet")
    run(path, 1, "algorithm.name=protonet")
    return path


def test_leo_on_a_protonet_run_keeps_its_features_frozen_resumes_and_adapts_any_number_of_ways(protonet_run, tmp_path):
    feature_run = [*LEO, f"algorithm.leo.feature_run={protonet_run}"]
    config = load_config(None, [*SYNTHETIC, *feature_run])
    start = build_experiment(config, check_data=False).initial_meta_parameters()
    protonet = distmeta.load(protonet_run).meta_params
    assert all(torch.equal(start[name], value) for name, value in protonet.items())
    assert run(tmp_path, 2, *feature_run).steps == 2
    resumed, whole = run(tmp_path, 3, *feature_run), run(tmp_path / "whole", 3, *feature_run)
    for name in whole.meta_params:
        torch.testing.assert_close(resumed.meta_params[name], whole.meta_params[name], msg=name)
    for name, value in whole.meta_params.items():
        # the features are frozen; LEO's own meta-parameters all learn
        assert torch.equal(value, start[name]) == (name in protonet), name
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    validations = [record for record in records if "val_accuracy" in record]
    assert validations and all(record["val_conditioning_std"] > 0 for record in validations)
    learner = distmeta.load(tmp_path)  # the checkpoint alone: the feature run is not read again
    support_x = torch.rand(7, 1, 28, 28)
    labels = [f"character-{i}" for i in range(7)]
    assert learner.adapt(support_x, labels, steps=3).outputs(support_x).shape == (7, 7)


def test_a_feature_run_missing_or_of_another_model_is_refused_naming_the_field(protonet_run, tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(None, [*SYNTHETIC, *LEO, f"algorithm.leo.feature_run={tmp_path / 'no-such-run'}"])
    assert error.value.field == "algorithm.leo.feature_run" and "no-such-run" in str(error.value)
    wider = load_config(None, [*SYNTHETIC, *LEO, "model.channels=16", f"algorithm.leo.feature_run={protonet_run}"])
    with pytest.raises(ConfigError, match="model.channels") as error:
        build_experiment(wider, check_data=False).initial_meta_parameters()
    assert error.value.field == "algorithm.leo.feature_run"


def test_on_frozen_features_two_workers_shares_sum_to_the_whole_batch_and_vmap_equals_the_loop(protonet_run):
    # what a run on N workers adds up: each task's sampled latents depend on the task alone
    config = load_config(
        None, [*SYNTHETIC, *LEO, "train.meta_batch_size=4", f"algorithm.leo.feature_run={protonet_run}"]
    )
    experiment = build_experiment(config, check_data=False)
    params = experiment.initial_meta_parameters()
    whole = batch_meta_gradient(experiment.algorithm, params, meta_batch(experiment, 3), "loop")
    shares = [
        batch_meta_gradient(experiment.algorithm, params, meta_batch(experiment, 3, share), "loop")
        for share in (share_of_meta_batch(4, rank, 2) for rank in range(2))
    ]
    vmapped = batch_meta_gradient(experiment.algorithm, params, meta_batch(experiment, 3), "vmap")
    for name in params:
        torch.testing.assert_close(sum(share.grad_sum[name] for share in shares), whole.grad_sum[name], msg=name)
        torch.testing.assert_close(vmapped.grad_sum[name], whole.grad_sum[name], rtol=1e-4, atol=1e-6, msg=name)
        assert (whole.grad_sum[name].abs().sum() == 0) == name.startswith("features."), name


def test_a_search_over_leo_fields_gives_configs_checked_like_a_file():
    base = load_config(None, [*SYNTHETIC, *LEO])
    space = parse_space({"algorithm.leo.latent_size": {"choice": [4, 16]}}, base)
    assert len(space.dimensions) == 1
    assert with_values(base, {"algorithm.leo.latent_size": 16}).algorithm.leo.latent_size == 16
    with pytest.raises(ConfigError) as error:
        with_values(base, {"algorithm.leo.latent_size": 0})
    assert error.value.field == "algorithm.leo.latent_size"
