"""The algorithm registry: one entry per algorithm owns its construction, checks and re-sizing."""

import pytest
import torch

from distmeta.algorithms import ALGORITHMS, build_algorithm, check_algorithm_settings
from distmeta.algorithms.maml import MAML
from distmeta.algorithms.registry import registry_of
from distmeta.config import AlgorithmConfig
from distmeta.errors import ConfigError
from tests.conftest import make_algorithm, meta_params_for, tiny_conv4


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_registered_algorithm_is_built_from_its_section_by_name(name):
    algorithm = build_algorithm(AlgorithmConfig(name=name, inner_lr=0.3, inner_steps=2), tiny_conv4(3), True, 3)
    assert isinstance(algorithm, ALGORITHMS[name])
    assert algorithm.name == name
    assert (algorithm.inner_lr, algorithm.inner_steps) == (0.3, 2)


def test_two_algorithms_of_one_name_are_refused():
    class Other(MAML):
        name = "maml"

    with pytest.raises(ValueError, match="two algorithms named 'maml'"):
        registry_of(MAML, Other)


def test_a_field_that_only_one_algorithm_reads_is_refused_for_another_naming_the_field_and_its_owner():
    with pytest.raises(
        ConfigError,
        match="algorithm.inner_batch_size: only reptile adapts on minibatches of the support set; anil does not",
    ):
        check_algorithm_settings(AlgorithmConfig(name="anil", inner_batch_size=4), False, "sinusoid")
    check_algorithm_settings(AlgorithmConfig(name="reptile", inner_batch_size=4), False, "sinusoid")


def test_an_unknown_algorithm_lists_the_registered_ones():
    with pytest.raises(ConfigError, match="algorithm.name: unknown value 'mamll' \\(choose from maml, "):
        check_algorithm_settings(AlgorithmConfig(name="mamll"), False, "sinusoid")


def test_metasgd_resizes_its_head_and_the_learned_rates_of_the_head_for_another_number_of_ways():
    model = tiny_conv4(3)
    metasgd = make_algorithm("metasgd", model, True, 3)
    params = meta_params_for(metasgd, model)
    resized = metasgd.meta_parameters_for_ways(params, 5)
    assert set(resized) == set(params)
    for name in ("head.weight", "head.bias", "inner_lr.head.weight", "inner_lr.head.bias"):
        assert resized[name].shape[0] == 5
        torch.testing.assert_close(resized[name], params[name].mean(0, keepdim=True).expand_as(resized[name]))
    for name in params:
        if "head." not in name:
            assert resized[name] is params[name]


def test_protonet_keeps_its_embedding_for_any_number_of_ways():
    model = tiny_conv4(3)
    protonet = make_algorithm("protonet", model, True, 3)
    params = meta_params_for(protonet, model)
    assert protonet.meta_parameters_for_ways(params, 7) is params
