"""The spread of task-conditioned outputs: a generator that outputs one vector for all tasks shows as 0."""

import torch

from distmeta.conditioning import conditioning_spread, task_conditioning_outputs
from distmeta.config import load_config
from distmeta.experiment import build_experiment


def test_a_collapsed_generator_has_zero_spread_but_not_zero_size():
    collapsed = conditioning_spread(torch.tensor([[0.5, -2.0]]).expand(10, 2))
    assert collapsed == {"conditioning_std": 0.0, "conditioning_mean_abs": 1.25}
    varied = conditioning_spread(torch.tensor([[0.0, 1.0], [2.0, 1.0]]))
    assert varied["conditioning_std"] > 0.7


def test_the_outputs_are_those_of_the_tasks_an_evaluation_adapts_to_and_none_without_conditioning():
    mmaml = build_experiment(load_config(None, ["task.name=multimodal", "algorithm.name=mmaml"]), check_data=False)
    params = mmaml.initial_meta_parameters()
    outputs = task_conditioning_outputs(mmaml, params, "val", 4)
    assert outputs.shape == (4, 2 * (40 + 40)) and outputs.std(0).mean() > 0
    torch.testing.assert_close(task_conditioning_outputs(mmaml, params, "val", 2), outputs[:2])
    torch.testing.assert_close(task_conditioning_outputs(mmaml, params, "val", range(2, 4)), outputs[2:])
    assert task_conditioning_outputs(mmaml, params, "val", range(0)) is None  # a rank with no share
    maml = build_experiment(load_config(None, ["task.name=multimodal"]), check_data=False)
    assert task_conditioning_outputs(maml, maml.initial_meta_parameters(), "val", 4) is None
