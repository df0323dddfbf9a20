"""Warm starts of classifiers take the body's stored adaptation alone: a head's rows follow each task's label order."""

import pytest
import torch

import distmeta
from distmeta.config import load_config
from distmeta.errors import DistmetaError
from distmeta.experiment import build_experiment
from distmeta.knowledge.warm_start import label_free_names
from distmeta.tasks import task_seed
from distmeta.training.checkpoint import save_checkpoint
from tests.conftest import TINY_SYNTHETIC_OMNIGLOT
from tests.knowledge.helpers import fill, sinusoid_run
from tests.knowledge.test_fitted_warm_start import synthetic_base

TINY_OMNIGLOT = [
    *TINY_SYNTHETIC_OMNIGLOT,
    "algorithm.test_inner_steps=1",
]


def omniglot_run(run_dir, algorithm: str = "maml"):
    """A tiny synthetic Omniglot run of untrained meta-parameters with 3 stored tasks."""
    config = load_config(None, [*TINY_OMNIGLOT, f"algorithm.name={algorithm}", f"train.run_dir={run_dir}"])
    experiment = build_experiment(config, check_data=False)
    params = experiment.initial_meta_parameters()
    save_checkpoint(run_dir, 0, config, params, {}, {})
    fill(run_dir, config, experiment, params, tasks=3)
    return distmeta.load(run_dir)


@pytest.fixture(scope="module")
def maml_learner(tmp_path_factory):
    return omniglot_run(tmp_path_factory.mktemp("omniglot-maml"))


def test_a_classifiers_label_free_names_are_its_bodys_and_a_regressors_are_all(maml_learner, tmp_path):
    learner = maml_learner
    names = list(learner.knowledge.header.adapted_names)
    body = label_free_names(learner.algorithm, names)
    assert body and all(name.startswith("features.") for name in body)
    assert set(names) - set(body) == {name for name in names if name.startswith("head.")} != set()
    _, experiment, params = sinusoid_run(tmp_path)
    assert label_free_names(experiment.algorithm, list(params)) == tuple(params)


def test_a_classifiers_knowledge_warm_start_moves_the_body_and_leaves_the_head_at_the_meta_parameters(maml_learner):
    learner = maml_learner
    seed = task_seed(learner.config.seed, "test", 0, 0)
    task = learner.experiment.tasks("test").sample(1, seed)
    model = learner.adapt(task.support_x[0], task.support_y[0], steps=0, warm_start="knowledge", neighbours=2)
    start, meta = model.meta_params, learner.meta_params
    assert all(torch.equal(start[name], meta[name]) for name in meta if name.startswith("head."))
    assert any(not torch.equal(start[name], meta[name]) for name in meta if name.startswith("features."))


def test_a_fitted_warm_start_restricted_to_names_scores_and_returns_those_names_alone():
    base = synthetic_base()
    seen = []

    def loss(delta):
        seen.append(set(delta))
        return 0.0

    assert set(base.fitted_warm_start_delta(torch.zeros(2), loss, k=2, candidates=4, names=("w",))) == {"w"}
    assert set(base.fitted_warm_start_delta(torch.zeros(2), loss, k=2, candidates=4, names=())) == set()
    assert seen == [{"w"}] * 4 + [set()] * 4


def test_a_warm_start_of_a_classifier_whose_store_keeps_only_the_head_says_so(tmp_path):
    learner = omniglot_run(tmp_path, algorithm="anil")
    task = learner.experiment.tasks("test").sample(1, task_seed(learner.config.seed, "test", 0, 0))
    with pytest.raises(DistmetaError, match="only the head's adaptation"):
        learner.adapt(task.support_x[0], task.support_y[0], steps=0, warm_start="knowledge")
