"""Meta-training a learned optimiser from the config, in this process: the same math as the
pure-torch meta-trainer, persistent unrolls that a resume continues, NaN stops."""

import pytest
import torch

from distmeta.algorithms.estimators import MetaGradient
from distmeta.config import load_config
from distmeta.errors import NonFiniteLossError
from distmeta.learned_optimizer_runs import training
from distmeta.learned_optimizer_runs.settings import meta_training_settings, optimisee_family
from distmeta.learned_optimizer_runs.unroll_states import unroll_states_of
from distmeta.learned_optimizers.meta_training import meta_train
from distmeta.training.checkpoint import CheckpointSkippedWarning, checkpoint_files, load_checkpoint
from distmeta.training.trainer import train
from tests.learned_optimizer_runs.conftest import TINY


def quiet(*_):
    return None


def trained(tmp_path, name, *overrides, final_eval=False, print_fn=quiet):
    config = load_config(None, [*TINY, f"train.run_dir={tmp_path / name}", *overrides])
    return train(config, print_fn=print_fn, final_eval=final_eval)


def test_distmeta_train_takes_the_meta_trainers_steps(tmp_path):
    result = trained(tmp_path, "run")
    config = load_config(None, TINY)
    reference = meta_train(meta_training_settings(config), optimisee_family(config, "train"))
    assert result.steps == 4
    for name, value in reference.meta_params.items():
        torch.testing.assert_close(result.meta_params[name], value, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("estimator", ["truncated_backprop", "pes"])
def test_a_resumed_run_continues_its_unrolls_to_the_parameters_of_an_uninterrupted_one(tmp_path, estimator):
    options = [
        f"algorithm.learned_optimizer.estimator={estimator}",
        "algorithm.learned_optimizer.pairs=2",
        "train.steps=5",
    ]
    whole = trained(tmp_path, "whole", *options)
    trained(tmp_path, "resumed", *options, "train.steps=2")
    lines = []
    resumed = trained(tmp_path, "resumed", *options, print_fn=lines.append)
    assert any(
        line.startswith("resuming from") and "3 unroll(s) at optimisee steps 4, 4, 4 of 6 continue" in line
        for line in lines
    )
    assert resumed.steps == whole.steps == 5
    assert all(torch.equal(resumed.meta_params[name], whole.meta_params[name]) for name in whole.meta_params)


def test_a_truncated_newest_checkpoint_is_skipped_with_a_warning_and_the_run_resumes_from_the_one_before(tmp_path):
    trained(tmp_path, "run")
    newest = checkpoint_files(tmp_path / "run")[-1]
    newest.write_bytes(newest.read_bytes()[:100])  # as a copy cut short would leave it
    lines = []
    with pytest.warns(CheckpointSkippedWarning, match=f"skipping {newest}"):
        resumed = trained(tmp_path, "run", "train.steps=4", print_fn=lines.append)
    assert any(line.startswith("resuming from") and "(step 2 of 4)" in line for line in lines)
    assert resumed.steps == 4 and load_checkpoint(newest)["step"] == 4  # trained and written again


def test_a_checkpoint_holds_each_unroll_by_task_index(tmp_path):
    trained(tmp_path, "run", "algorithm.learned_optimizer.estimator=pes", "algorithm.learned_optimizer.pairs=2")
    payload = load_checkpoint(checkpoint_files(tmp_path / "run")[0])
    assert payload["step"] == 2 and sorted(payload["unroll_states"]) == [0, 1, 2]
    second_rank = unroll_states_of(payload, range(1, 3))
    assert sorted(second_rank) == [1, 2]
    state = second_rank[1]
    # PES: each pair's perturbed unrolls and the noise summed since the unroll began
    assert state["position"] == 4 and state["positive"]["params"]["theta"].shape == (2, 4, 3)
    assert state["accumulated"]["layer0.weight_ih"].shape[0] == 2


def test_a_non_finite_meta_gradient_stops_the_run_before_its_update_and_checkpoint(tmp_path, monkeypatch):
    class NaNAtStepThree:
        def __init__(self, estimator):
            self.estimator, self.calls = estimator, 0

        def estimate(self, unroll, meta_params, unroll_state, seed):
            self.calls += 1
            estimate = self.estimator.estimate(unroll, meta_params, unroll_state, seed)
            if self.calls > 6:  # 3 unrolls a step: the third step
                grads = {name: torch.full_like(g, float("nan")) for name, g in estimate.grads.items()}
                return MetaGradient(estimate.mean_loss, grads, estimate.unroll_state, estimate.info)
            return estimate

    real_build_run = training.build_run

    def build_run_with_nan(config):
        run = real_build_run(config)
        run.estimator = NaNAtStepThree(run.estimator)
        return run

    monkeypatch.setattr(training, "build_run", build_run_with_nan)
    with pytest.raises(NonFiniteLossError, match="at step 2"):
        trained(tmp_path, "nan", "train.checkpoint_every=1")
    assert [path.name for path in checkpoint_files(tmp_path / "nan")] == ["step_00000001.pt", "step_00000002.pt"]


def test_a_time_limit_stops_the_run_validated_and_checkpointed_at_the_first_log_interval(tmp_path):
    # the limit is used up at once: the run stops at step 2 (log_every), saying why, as a few-shot run does
    result = trained(tmp_path, "timed", "train.steps=50", "train.time_limit_minutes=1e-9", "train.checkpoint_every=0")
    assert result.steps == 2
    last = result.summary["final_train"]
    assert "time_limit_minutes" in last["stopped"] and "val_loss" in last
    assert [path.name for path in checkpoint_files(tmp_path / "timed")] == ["step_00000002.pt"]
