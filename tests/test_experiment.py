"""An experiment meta-trains on `task.train_ways`-way tasks and validates and tests on `task.ways`-way ones."""

import pytest
import torch

from distmeta.config import load_config
from distmeta.evaluation import task_results
from distmeta.experiment import build_experiment
from tests.conftest import TINY_SYNTHETIC_OMNIGLOT


def experiment(algorithm: str, *overrides: str):
    config = load_config(None, [*TINY_SYNTHETIC_OMNIGLOT, f"algorithm.name={algorithm}", *overrides])
    return build_experiment(config)


def results(experiment, params, split: str):
    return task_results(experiment, params, split, range(6), steps=1)


def test_the_model_is_built_for_the_wider_meta_training_tasks():
    wide = experiment("maml", "task.train_ways=6")
    assert wide.output_size == 6
    assert wide.initial_meta_parameters()["head.weight"].shape[0] == 6
    assert wide.tasks("train").sample(1, 0).support_y.max() == 5
    assert wide.tasks("val").sample(1, 0).support_y.max() == 2


@pytest.mark.parametrize("split", ["val", "test"])
def test_prototypical_networks_meta_trained_wider_evaluate_as_if_meta_trained_on_task_ways(split):
    wide, narrow = experiment("protonet", "task.train_ways=6"), experiment("protonet")
    params = wide.initial_meta_parameters()
    # an embedding alone is meta-learned: the same parameters serve any number of ways
    assert params.keys() == narrow.initial_meta_parameters().keys()
    for got, expected in zip(results(wide, params, split), results(narrow, params, split)):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_a_maml_head_meta_trained_wider_is_evaluated_from_the_mean_of_its_class_rows():
    wide, narrow = experiment("maml", "task.train_ways=6"), experiment("maml")
    params = wide.initial_meta_parameters()
    resized = dict(
        params,
        **{
            name: params[name].mean(0, keepdim=True).expand(3, *params[name].shape[1:])
            for name in ("head.weight", "head.bias")
        },
    )
    for got, expected in zip(results(wide, params, "val"), results(narrow, resized, "val")):
        torch.testing.assert_close(got, expected)  # an expanded head sums in another order


def test_without_train_ways_the_trained_algorithm_and_parameters_serve_every_split():
    plain = experiment("maml")
    params = plain.initial_meta_parameters()
    for split in ("train", "val", "test"):
        algorithm, split_params = plain.algorithm_for(split, params)
        assert algorithm is plain.algorithm and split_params is params
