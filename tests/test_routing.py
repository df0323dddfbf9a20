"""Multi-learner routing: a task goes to the learner whose stored models fit its support set best."""

import pytest
import torch

import distmeta
from distmeta.errors import DistmetaError
from distmeta.routing import route
from distmeta.tasks import task_seed
from tests.knowledge.helpers import fill, sinusoid_run

MODES = {"lines": "task.modes=[linear]", "waves": "task.modes=[sinusoid]"}


def family_run(run_dir, modes):
    config, experiment, params = sinusoid_run(run_dir, ["task.name=multimodal", modes, "task.query_shots=10"])
    fill(run_dir, config, experiment, params, tasks=20)
    return distmeta.load(run_dir)


def test_a_task_goes_to_the_learner_whose_stored_tasks_fit_it_best(tmp_path):
    learners = {name: family_run(tmp_path / name, modes) for name, modes in MODES.items()}
    for name, learner in learners.items():
        distribution = learner.experiment.tasks("test")
        for index in range(3):
            task = distribution.sample(1, task_seed(learner.config.seed, "test", 0, index))
            chosen = route(list(learners.values()), task.support_x[0], task.support_y[0])
            assert chosen.learner is learner, f"a {name} task went elsewhere: {chosen.fits}"
            assert len(chosen.fits) == 2 and all(loss >= 0 for _, loss in chosen.fits)


def test_routing_without_learners_is_refused():
    with pytest.raises(DistmetaError, match="at least one learner"):
        route([], torch.zeros(5, 1), torch.zeros(5, 1))
