"""One rank's meta-step is the engine's meta-step, whether a clock watches it or not."""

from contextlib import contextmanager

import pytest
import torch

from distmeta.config import load_config
from distmeta.errors import DatasetError
from distmeta.experiment import build_experiment
from distmeta.runtime.step import rank_meta_step
from distmeta.training.trainer import initial_state, meta_batch, meta_step

TINY = ["train.meta_batch_size=6", "model.hidden_sizes=[16, 16]"]


class RecordingClock:
    def __init__(self):
        self.events: list[str] = []

    @contextmanager
    def phase(self, name):
        self.events.append(name)
        yield

    def wait_for_slowest_rank(self):
        self.events.append("wait")


def test_a_single_rank_step_updates_and_reports_exactly_as_the_engine_step():
    experiment = build_experiment(load_config(None, TINY), check_data=False)
    engine, rank = initial_state(experiment), initial_state(experiment)
    for _ in range(2):
        expected = meta_step(experiment, engine)
        metrics, _ = rank_meta_step(experiment, rank, rank=0, world_size=1)
        assert metrics.tasks == expected.tasks == 6
        assert metrics.meta_loss == expected.meta_loss
        assert metrics.score == expected.score
    for name in engine.meta_params:
        assert torch.equal(rank.meta_params[name], engine.meta_params[name]), name


def test_the_clock_sees_the_phases_in_order_and_the_rank_gets_its_share_of_tasks():
    experiment = build_experiment(load_config(None, TINY), check_data=False)
    clock = RecordingClock()
    _, batch = rank_meta_step(experiment, initial_state(experiment), rank=1, world_size=2, clock=clock)
    assert clock.events == ["sampling", "meta_gradient", "sync_wait", "wait", "all_reduce", "optimizer"]
    # rank 1 of 2 samples tasks 3, 4, 5 of the step's 6
    expected = meta_batch(experiment, 0, range(3, 6))
    torch.testing.assert_close(batch.support_x, expected.support_x)


def test_a_user_error_in_a_step_is_raised_after_the_all_reduce_and_no_update_is_applied(monkeypatch):
    import distmeta.runtime.step as step

    experiment = build_experiment(load_config(None, TINY), check_data=False)
    state = initial_state(experiment)
    before = {name: value.clone() for name, value in state.meta_params.items()}
    clock = RecordingClock()

    def missing_file(*_):
        raise DatasetError("/data/omniglot.zip", "does not exist on this node")

    monkeypatch.setattr(step, "meta_batch", missing_file)
    with pytest.raises(DatasetError, match="omniglot.zip: does not exist") as raised:
        rank_meta_step(experiment, state, rank=0, world_size=1, clock=clock)
    # the failing rank still joins the all-reduce (that is how the others learn of it), then raises
    assert clock.events == ["sampling", "sync_wait", "wait", "all_reduce", "optimizer"]
    assert raised.value.__notes__ == ["(raised on rank 0)"]
    assert state.step == 0 and all(torch.equal(state.meta_params[k], before[k]) for k in before)
