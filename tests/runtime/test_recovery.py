"""When a run stops trying to recover its workers, and what it then says (no Ray cluster here:
tests/runtime/test_node_loss.py loses a real node)."""

import pytest
import torch
from ray.train import ControllerError, WorkerGroupError

from distmeta.config import load_config
from distmeta.errors import RecoveryFailedError
from distmeta.runtime.capacity import WorkerShape
from distmeta.runtime.recovery import failure_config, placement_retries, recovery_reported
from distmeta.training.checkpoint import save_checkpoint
from distmeta.training.trainer import make_optimizer


@pytest.mark.parametrize(
    ("scale_timeout_s", "start_timeout_s", "retries"),
    [(900, "60", 14), (61, "60", 1), (60, "60", 0), (10, "60", 0), (6, "3", 1)],
)
def test_placement_is_retried_until_the_scale_timeout_is_spent(scale_timeout_s, start_timeout_s, retries, monkeypatch):
    monkeypatch.setenv("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", start_timeout_s)
    assert placement_retries(scale_timeout_s) == retries
    config = failure_config(3, scale_timeout_s)
    assert (config.max_failures, config.controller_failure_limit) == (3, retries)


def test_workers_failing_beyond_max_failures_name_the_first_failure_and_the_checkpoint_kept(tmp_path):
    config = load_config(None, ["model.hidden_sizes=[4]"])
    params = {"w": torch.zeros(2, requires_grad=True)}
    save_checkpoint(tmp_path, 8, config, params, make_optimizer(config, params).state_dict(), {})
    failure = WorkerGroupError("rank 1 died", {1: RuntimeError("killed\nby the OOM killer"), 0: OSError("gone")})
    with pytest.raises(RecoveryFailedError) as raised, recovery_reported(tmp_path, 2, WorkerShape(1, 0), 3, 900):
        raise failure
    assert raised.value.resume_step == 8
    assert str(raised.value) == (
        "the workers failed 4 time(s), more than the 3 restart(s) allowed (max_failures); "
        "the last failure: rank 0: OSError: gone; the checkpoint of step 8 is kept: "
        "the same command resumes from it"
    )
    assert raised.value.__cause__ is failure


def test_a_run_stopped_by_ray_before_any_checkpoint_says_the_same_command_starts_it_again(tmp_path):
    with pytest.raises(RecoveryFailedError) as raised, recovery_reported(tmp_path, 1, WorkerShape(1, 0), 3, 900):
        raise ControllerError(RuntimeError("the controller could not start"))
    assert raised.value.resume_step is None
    assert str(raised.value) == (
        "Ray Train stopped the run: RuntimeError: the controller could not start; "
        "no checkpoint was written: the same command starts it again"
    )
