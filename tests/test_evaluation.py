"""Meta-evaluation reports the mean with a 95% interval over fixed held-out tasks."""

import math

import pytest
import torch

from distmeta.config import load_config
from distmeta.evaluation import evaluate, mean_and_ci95
from distmeta.experiment import build_experiment


def test_the_interval_is_1_96_standard_errors():
    values = torch.tensor([0.0, 1.0] * 50)
    mean, ci95 = mean_and_ci95(values)
    assert mean == pytest.approx(0.5)
    assert ci95 == pytest.approx(1.959964 * values.double().std().item() / math.sqrt(100))


def test_evaluation_uses_the_same_tasks_whatever_the_batch_size():
    experiment = build_experiment(load_config(None, ["train.vectorize=loop"]))
    params = experiment.initial_meta_parameters()
    a = evaluate(experiment, params, "test", num_tasks=30, inner_steps=2, batch_size=7)
    b = evaluate(experiment, params, "test", num_tasks=30, inner_steps=2, batch_size=30)
    assert a.mean == pytest.approx(b.mean, rel=1e-5)
    assert a.tasks == 30 and a.metric == "mse" and a.ci95 > 0
    assert "test mse" in str(a)
