"""The single-process trainer: it learns, checkpoints, resumes exactly, and stops on NaN."""

import errno
import json

import pytest
import torch

from distmeta.config import TrainConfig, load_config
from distmeta.errors import ConfigError, NonFiniteLossError, StorageError
from distmeta.evaluation import evaluate
from distmeta.experiment import build_experiment
from distmeta.runtime.agreement import RankFailure
from distmeta.training.checkpoint import CheckpointSkippedWarning, latest_checkpoint, load_checkpoint
from distmeta.training.progress import ProgressLog
from distmeta.training.trainer import initial_state, meta_lr_at, train, train_loop
from tests.conftest import TINY_SYNTHETIC_OMNIGLOT


def tiny(run_dir, *overrides):
    return load_config(
        None,
        [
            f"train.run_dir={run_dir}",
            "train.steps=40",
            "train.meta_batch_size=4",
            "train.log_every=10",
            "train.val_every=20",
            "train.val_tasks=8",
            "train.checkpoint_every=20",
            "eval.tasks=16",
            "model.hidden_sizes=[16, 16]",
            *overrides,
        ],
    )


def quiet(*_):
    pass


def test_a_short_run_lowers_the_loss_and_writes_metrics_checkpoints_and_summary(tmp_path):
    result = train(tiny(tmp_path / "run", "train.meta_lr=0.01"), print_fn=quiet)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [10, 20, 30, 40]
    assert records[-1]["meta_loss"] < records[0]["meta_loss"]
    assert "val_mse" in records[1] and "val_mse" in records[3]
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "step_00000020.pt",
        "step_00000040.pt",
    ]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 40 and summary["test"]["tasks"] == 16
    # the summary's rate is the training loop's: every task of the run over the loop's time
    tasks = 40 * 4  # steps x meta_batch_size
    assert summary["tasks_per_s"] == records[-1]["mean_tasks_per_s"]
    assert summary["tasks_per_s"] == pytest.approx(tasks / records[-1]["elapsed_s"], rel=1e-6)
    assert result.test.metric == "mse"


def test_the_same_config_trains_to_bit_identical_parameters(tmp_path):
    a = train(tiny(tmp_path / "a"), print_fn=quiet, final_eval=False)
    b = train(tiny(tmp_path / "b"), print_fn=quiet, final_eval=False)
    assert all(torch.equal(a.meta_params[k], b.meta_params[k]) for k in a.meta_params)


def test_resuming_from_a_checkpoint_ends_where_an_uninterrupted_run_ends(tmp_path):
    whole = train(tiny(tmp_path / "whole"), print_fn=quiet, final_eval=False)
    train(tiny(tmp_path / "split", "train.steps=20"), print_fn=quiet, final_eval=False)
    lines = []
    resumed = train(tiny(tmp_path / "split", "train.steps=40"), print_fn=lines.append, final_eval=False)
    assert any("resuming from" in line and "step 20" in line for line in lines)
    assert all(torch.equal(whole.meta_params[k], resumed.meta_params[k]) for k in whole.meta_params)


def test_a_failed_checkpoint_write_stops_the_run_with_a_storage_error_and_the_one_before_resumes_it(
    tmp_path, monkeypatch
):
    real_save = torch.save

    def disk_full_at_step_40(payload, file):
        if payload["step"] == 40:
            file.write(b"the first bytes of a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(payload, file)

    monkeypatch.setattr(torch, "save", disk_full_at_step_40)
    with pytest.raises(StorageError, match="the checkpoint of step 40 could not be written"):
        train(tiny(tmp_path / "run"), print_fn=quiet, final_eval=False)
    # lost: the 20 steps after the checkpoint of step 20, and no file; that checkpoint is whole
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step_00000020.pt"]
    monkeypatch.setattr(torch, "save", real_save)
    lines = []
    resumed = train(tiny(tmp_path / "run"), print_fn=lines.append, final_eval=False)
    assert any("resuming from" in line and "step 20 of 40" in line for line in lines)
    whole = train(tiny(tmp_path / "whole"), print_fn=quiet, final_eval=False)
    assert all(torch.equal(whole.meta_params[k], resumed.meta_params[k]) for k in whole.meta_params)


def test_a_truncated_newest_checkpoint_is_skipped_with_a_warning_and_the_run_resumes_from_the_one_before(tmp_path):
    train(tiny(tmp_path / "run"), print_fn=quiet, final_eval=False)
    newest = latest_checkpoint(tmp_path / "run")
    newest.write_bytes(newest.read_bytes()[:1000])  # as a copy cut short would leave it
    lines = []
    with pytest.warns(CheckpointSkippedWarning, match=f"skipping {newest}"):
        resumed = train(tiny(tmp_path / "run", "train.steps=60"), print_fn=lines.append, final_eval=False)
    assert any("resuming from" in line and "step 20 of 60" in line for line in lines)
    assert resumed.steps == 60 and load_checkpoint(newest)["step"] == 40  # step 40 was trained and written again


def test_a_cosine_scheduled_run_resumes_only_with_the_steps_it_anneals_over(tmp_path):
    cosine = ["train.meta_lr_schedule=cosine", "train.checkpoint_every=20"]
    train(tiny(tmp_path / "run", "train.steps=40", *cosine), print_fn=quiet, final_eval=False)
    with pytest.raises(ConfigError, match="train.steps: the cosine meta_lr_schedule anneals over .* started with 40"):
        train(tiny(tmp_path / "run", "train.steps=60", *cosine), print_fn=quiet, final_eval=False)
    # the constant schedule takes more steps on resume, as before
    train(tiny(tmp_path / "constant", "train.steps=20"), print_fn=quiet, final_eval=False)
    assert train(tiny(tmp_path / "constant", "train.steps=40"), print_fn=quiet, final_eval=False).steps == 40


def test_resuming_with_a_changed_config_names_the_fields_that_differ(tmp_path):
    train(tiny(tmp_path / "run", "train.steps=20"), print_fn=quiet, final_eval=False)
    with pytest.raises(ConfigError) as error:
        train(tiny(tmp_path / "run", "train.steps=20", "algorithm.inner_lr=0.5", "seed=3"), print_fn=quiet)
    assert "algorithm.inner_lr" in str(error.value) and "seed" in str(error.value)


def test_a_nan_loss_stops_training_naming_step_and_seed_and_no_checkpoint_follows(tmp_path):
    # an inner rate this large blows the MLP up within a few steps
    config = tiny(tmp_path / "run", "algorithm.inner_lr=1e30", "train.checkpoint_every=1")
    with pytest.raises(NonFiniteLossError) as error:
        train(config, print_fn=quiet)
    step = error.value.step
    assert f"step {step}" in str(error.value) and f"task seed {error.value.task_seed}" in str(error.value)
    latest = latest_checkpoint(tmp_path / "run")
    if latest is not None:
        assert load_checkpoint(latest)["step"] <= step


def test_cosine_meta_lr_starts_at_meta_lr_halves_midway_and_ends_near_zero():
    schedule = TrainConfig(steps=100, meta_lr=0.01, meta_lr_schedule="cosine")
    assert meta_lr_at(schedule, 0) == pytest.approx(0.01)
    assert meta_lr_at(schedule, 50) == pytest.approx(0.005)
    assert meta_lr_at(schedule, 99) < 1e-5
    assert meta_lr_at(TrainConfig(meta_lr=0.01), 99) == 0.01


def test_meta_grad_clip_rescales_a_large_mean_meta_gradient_to_the_norm_and_leaves_a_small_one_alone():
    from distmeta.training.trainer import TrainState, apply_meta_gradient

    clipped = TrainConfig(meta_lr=1.0, meta_optimizer="sgd", meta_grad_clip=2.0)
    for grad_sum, expected_step in [
        ({"w": torch.tensor([6.0, 8.0]), "b": torch.tensor([0.0])}, [1.2, 1.6, 0.0]),  # mean (3, 4, 0), norm 5: to 2
        ({"w": torch.tensor([0.6, 0.8]), "b": torch.tensor([0.0])}, [0.3, 0.4, 0.0]),  # mean norm 0.5: kept
    ]:
        params = {"w": torch.zeros(2, requires_grad=True), "b": torch.zeros(1, requires_grad=True)}
        state = TrainState(params, torch.optim.SGD(params.values(), lr=1.0))
        apply_meta_gradient(state, clipped, grad_sum, num_tasks=2)
        step = -torch.cat([params["w"].detach(), params["b"].detach()])
        assert step.tolist() == pytest.approx(expected_step)


def test_a_negative_meta_grad_clip_is_refused_by_name():
    with pytest.raises(ConfigError, match="train.meta_grad_clip"):
        load_config(None, ["train.meta_grad_clip=-1"])


def test_a_meta_step_checks_finiteness_once_on_one_flat_buffer(tmp_path, monkeypatch):
    from distmeta.experiment import build_experiment
    from distmeta.training import trainer

    config = load_config(None, [f"train.run_dir={tmp_path}", "train.meta_batch_size=4"])
    experiment = build_experiment(config)
    state = trainer.initial_state(experiment)
    checked = []
    real_isfinite = torch.isfinite
    monkeypatch.setattr(torch, "isfinite", lambda values: checked.append(values.dim()) or real_isfinite(values))
    trainer.meta_step(experiment, state)
    assert checked == [1]  # one call, on a flat buffer: a GPU is waited for once per step


def test_a_resume_within_the_same_second_keeps_the_earlier_sessions_tensorboard_events(tmp_path, monkeypatch):
    monkeypatch.setattr("time.time", lambda: 1_800_000_000.0)  # both sessions open their event file in one second
    train(tiny(tmp_path / "run", "train.steps=20"), print_fn=quiet, final_eval=False)
    train(tiny(tmp_path / "run", "train.steps=40"), print_fn=quiet, final_eval=False)
    assert len(list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))) == 2


def test_a_run_meta_trained_on_wider_tasks_validates_and_tests_on_task_ways_way_tasks(tmp_path):
    narrow = [
        *TINY_SYNTHETIC_OMNIGLOT,
        "algorithm.name=protonet",
        "algorithm.test_inner_steps=0",
        "train.steps=10",
        "train.meta_batch_size=2",
        "train.log_every=5",
        "train.val_every=5",
        "train.val_tasks=6",
        "eval.tasks=6",
    ]
    config = load_config(None, [*narrow, "task.train_ways=6", f"train.run_dir={tmp_path}"])
    result = train(config, print_fn=quiet)
    # the same parameters on 3-way tasks, scored by an experiment that never saw wider ones
    three_way = build_experiment(load_config(None, narrow))
    assert result.test is not None
    assert result.test.mean == evaluate(three_way, result.meta_params, "test").mean
    last = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["val_accuracy"] == evaluate(three_way, result.meta_params, "val", 6).mean


def test_a_leader_keeping_its_logging_errors_for_the_ranks_logs_each_interval_and_trains_on_past_a_failed_write(
    tmp_path,
):
    # as on Ray: rank 0's error in its own work is kept for the next collective, not raised at once
    config = tiny(tmp_path, "train.steps=30")
    experiment = build_experiment(config)
    state = initial_state(experiment)
    failure = RankFailure(0)
    writes = []

    def storage_full_at_step_20() -> None:
        writes.append(state.step)
        if state.step == 20:
            raise StorageError(tmp_path, "no space left")

    progress = ProgressLog(tmp_path, config.train.steps, config.metric, quiet, before_write=storage_full_at_step_20)
    train_loop(experiment, state, progress, leader_failure=failure)
    assert state.step == 30 and 30 in writes
    assert [record["step"] for record in state.history] == [10, 30]  # step 20's line was lost, kept as an error
    assert "val_mse" in state.history[-1]
    assert isinstance(failure.error, StorageError) and "no space left" in str(failure.error)
