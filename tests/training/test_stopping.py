"""Early stops: at a target validation accuracy, or when the time limit is used up, on every rank alike."""

import json

import pytest

from distmeta.config import load_config
from distmeta.errors import ConfigError
from distmeta.evaluation import EvalResult
from distmeta.experiment import build_experiment
from distmeta.training.checkpoint import latest_checkpoint, load_checkpoint
from distmeta.training.trainer import initial_state, local_validation, train, train_loop
from tests.conftest import TINY_SYNTHETIC_OMNIGLOT

TINY_OMNIGLOT = [
    *TINY_SYNTHETIC_OMNIGLOT,
    "algorithm.name=protonet",
    "algorithm.test_inner_steps=0",
    "train.steps=40",
    "train.meta_batch_size=2",
    "train.log_every=5",
    "train.val_every=10",
    "train.val_tasks=6",
    "train.checkpoint_every=20",
    "eval.tasks=6",
]
TINY_SINUSOID = [
    "train.steps=40",
    "train.meta_batch_size=2",
    "train.log_every=5",
    "train.val_every=20",
    "train.val_tasks=4",
    "train.checkpoint_every=20",
    "model.hidden_sizes=[8]",
]


def quiet(*_):
    pass


def records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_run_stops_at_the_first_validation_that_reaches_the_target_and_ends_with_its_checkpoint(tmp_path):
    # any accuracy reaches 1%: the first validation, at step 10, is the crossing
    config = load_config(None, [*TINY_OMNIGLOT, f"train.run_dir={tmp_path}", "train.stop_at_accuracy=0.01"])
    lines = []
    result = train(config, print_fn=lines.append, final_eval=False)
    assert result.steps == 10
    last = records(tmp_path)[-1]
    assert last["step"] == 10 and last["val_accuracy"] >= 0.01
    assert "reached train.stop_at_accuracy 1%" in last["stopped"]
    assert any("stopping: val accuracy" in line for line in lines)
    assert load_checkpoint(latest_checkpoint(tmp_path))["step"] == 10  # the crossing's parameters


def test_a_used_up_time_limit_stops_at_the_next_log_interval_validated_and_checkpointed(tmp_path):
    config = load_config(None, [*TINY_SINUSOID, f"train.run_dir={tmp_path}", "train.time_limit_minutes=1e-9"])
    result = train(config, print_fn=quiet, final_eval=False)
    assert result.steps == 5  # the first log interval; its validation was not scheduled (every 20)
    last = records(tmp_path)[-1]
    assert "val_mse" in last and "time_limit_minutes" in last["stopped"]
    assert load_checkpoint(latest_checkpoint(tmp_path))["step"] == 5


def test_a_time_limited_run_s_eta_is_the_time_it_has_left_not_what_its_steps_would_take(tmp_path):
    limit_s = 1.2
    overrides = [*TINY_SINUSOID, "train.steps=10000000", f"train.time_limit_minutes={limit_s / 60}"]
    lines = []
    train(load_config(None, [*overrides, f"train.run_dir={tmp_path}"]), print_fn=lines.append, final_eval=False)
    logged = [record for record in records(tmp_path) if "eta_s" in record]
    # ten million steps at this pace would take hours; the limit ends the run within seconds
    assert len(logged) >= 2 and all(record["eta_s"] <= limit_s for record in logged)
    assert logged[-1]["eta_s"] == 0 and "stopped" in logged[-1]
    assert any("ETA 0:00:00 | stopping: train.time_limit_minutes" in line for line in lines)


def test_every_rank_stops_where_the_leader_s_clock_says_and_validates_there_first(tmp_path):
    config = load_config(None, [*TINY_SINUSOID, f"train.run_dir={tmp_path}", "train.time_limit_minutes=60"])
    experiment = build_experiment(config)
    state = initial_state(experiment)
    asked, validated, saved = [], [], []

    def leader_says_time_is_up(reading: bool) -> bool:  # what a broadcast from rank 0 gives a rank that is not it
        asked.append((state.step, reading))
        return state.step == 10

    def validation(experiment, meta_params):  # on Ray: this rank's share, gathered
        validated.append(state.step)
        return local_validation(experiment, meta_params)

    train_loop(
        experiment,
        state,
        None,
        checkpoint_fn=lambda s: saved.append(s.step),
        leader_decision=leader_says_time_is_up,
        validation=validation,
    )
    assert state.step == 10 and saved == [10]
    assert asked == [(5, False), (10, False)]  # asked at each log interval; this rank's own clock never counts
    assert validated == [10]  # not scheduled (every 20), but a run that stops ends validated, on every rank


def test_every_rank_stops_at_the_target_from_the_validation_they_share_without_asking_the_leader(tmp_path):
    config = load_config(None, [*TINY_OMNIGLOT, f"train.run_dir={tmp_path}", "train.stop_at_accuracy=0.9"])
    experiment = build_experiment(config)
    state = initial_state(experiment)
    saved = []

    def validation(experiment, meta_params):  # what every rank holds after the gather: the same figures
        accuracy = 0.95 if state.step == 20 else 0.5
        return EvalResult("accuracy", accuracy, 0.01, 1.0, 6, 0, "val")

    train_loop(
        experiment,
        state,
        None,
        checkpoint_fn=lambda s: saved.append(s.step),
        leader_decision=lambda _: pytest.fail("a collective the target does not need"),
        validation=validation,
    )
    assert state.step == 20 and saved == [20]


def test_without_stop_rules_no_rank_is_asked(tmp_path):
    config = load_config(None, [*TINY_SINUSOID, f"train.run_dir={tmp_path}", "train.steps=10"])
    experiment = build_experiment(config)
    state = initial_state(experiment)
    train_loop(experiment, state, None, leader_decision=lambda _: pytest.fail("a collective no rule needs"))
    assert state.step == 10


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.stop_at_accuracy=0.9"], "needs a classification task"),
        ([*TINY_OMNIGLOT, "train.stop_at_accuracy=95"], "between 0 and 1"),
        ([*TINY_OMNIGLOT, "train.stop_at_accuracy=0.9", "train.val_every=0"], "set train.val_every"),
    ],
)
def test_a_target_accuracy_that_cannot_work_is_refused_naming_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message) as error:
        load_config(None, overrides)
    assert error.value.field == "train.stop_at_accuracy"


def test_a_negative_time_limit_is_refused_naming_the_field():
    with pytest.raises(ConfigError) as error:
        load_config(None, ["train.time_limit_minutes=-1"])
    assert error.value.field == "train.time_limit_minutes"
