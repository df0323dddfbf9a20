"""The timed meta-step is the engine's meta-step: the clock must not change the math."""

import threading

import pytest
import torch

from distmeta.benchmarking.timing import PHASES, timed_meta_step, timed_steps
from distmeta.config import load_config
from distmeta.execution import batch_meta_gradient, batch_query_losses
from distmeta.experiment import build_experiment
from distmeta.training.prefetch import THREAD_NAME
from distmeta.training.trainer import initial_state, meta_batch, meta_step

TINY = ["train.meta_batch_size=6", "model.hidden_sizes=[16, 16]"]


@pytest.mark.parametrize(
    "overrides",
    [["train.vectorize=vmap"], ["train.vectorize=loop"], ["algorithm.name=reptile"], ["algorithm.name=metasgd"]],
)
def test_timed_steps_update_the_parameters_exactly_as_meta_step(overrides):
    experiment = build_experiment(load_config(None, [*TINY, *overrides]), check_data=False)
    engine, timed = initial_state(experiment), initial_state(experiment)
    for _ in range(3):
        meta_step(experiment, engine)
        times = timed_meta_step(experiment, timed)
        assert all(getattr(times, name) >= 0 for name in PHASES)
        # the phases lie within the step (how much of it they cover is a matter of timing: the
        # statements between them take longer when this process is preempted, as on a shared CPU)
        assert sum(getattr(times, name) for name in PHASES) <= times.step
    assert timed.step == engine.step == 3
    for name in engine.meta_params:
        assert torch.equal(timed.meta_params[name], engine.meta_params[name]), name
    moments = [state.optimizer.state_dict()["state"][0]["exp_avg"] for state in (timed, engine)]
    assert torch.equal(*moments)


def test_timed_steps_with_tasks_drawn_ahead_update_the_parameters_exactly_as_meta_step():
    experiment = build_experiment(load_config(None, [*TINY, "train.prefetch=on"]), check_data=False)
    engine, timed = initial_state(experiment), initial_state(experiment)
    for _ in range(3):
        meta_step(experiment, engine)
    times = timed_steps(experiment, timed, rank=0, world_size=1, warmup=1, steps=2)
    assert len(times) == 2 and all(t.sampling >= 0 for t in times)
    for name in engine.meta_params:
        assert torch.equal(timed.meta_params[name], engine.meta_params[name]), name
    assert not [thread for thread in threading.enumerate() if thread.name.startswith(THREAD_NAME)]


@pytest.mark.parametrize("strategy", ["vmap", "loop"])
def test_the_forward_only_pass_gives_the_losses_of_the_meta_gradient(strategy):
    experiment = build_experiment(load_config(None, TINY), check_data=False)
    params = experiment.initial_meta_parameters()
    batch = meta_batch(experiment, 0)
    losses = batch_query_losses(experiment.algorithm, params, batch, strategy)
    expected = batch_meta_gradient(experiment.algorithm, params, batch, strategy).losses
    torch.testing.assert_close(losses, expected)
    assert not losses.requires_grad


def test_warm_up_steps_are_taken_but_not_timed():
    experiment = build_experiment(load_config(None, TINY), check_data=False)
    state = initial_state(experiment)
    times = timed_steps(experiment, state, rank=0, world_size=1, warmup=2, steps=3)
    assert len(times) == 3 and state.step == 5
