"""Tasks drawn a step ahead (train.prefetch) are exactly the tasks each step would draw in line."""

import json
import threading

import pytest
import torch

import distmeta.training.trainer as trainer
from distmeta.config import load_config
from distmeta.errors import ConfigError, DatasetError
from distmeta.experiment import build_experiment
from distmeta.runtime.step import rank_meta_step
from distmeta.training.prefetch import THREAD_NAME, BatchPrefetcher, prefetches
from distmeta.training.trainer import initial_state, meta_batch, sampled_tasks, train

TINY = ["train.meta_batch_size=6", "model.hidden_sizes=[16, 16]"]
CPU = torch.device("cpu")


def tiny_run(run_dir, *overrides):
    return load_config(
        None,
        [
            *TINY,
            f"train.run_dir={run_dir}",
            "train.steps=8",
            "train.log_every=2",
            "train.val_every=0",
            "train.val_tasks=4",
            "train.checkpoint_every=4",
            *overrides,
        ],
    )


def quiet(*_):
    pass


def prefetch_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith(THREAD_NAME)]


def same_batch(a, b) -> bool:
    return a.seed == b.seed and all(torch.equal(x, y) for x, y in zip(a.tensors(), b.tensors(), strict=True))


def losses(run_dir) -> list[float]:
    return [json.loads(line)["meta_loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_auto_prefetches_on_a_gpu_only_and_a_bad_value_names_the_field():
    assert prefetches("auto", torch.device("cuda", 0)) and not prefetches("auto", CPU)
    assert prefetches("on", CPU) and not prefetches("off", torch.device("cuda", 0))
    assert load_config(None, ["train.prefetch=on"]).train.prefetch == "on"
    with pytest.raises(ConfigError, match="train.prefetch"):
        load_config(None, ["train.prefetch=sometimes"])


def test_every_step_gets_the_batch_sampling_in_line_gives_it():
    experiment = build_experiment(load_config(None, TINY), check_data=False)
    with BatchPrefetcher(lambda step: sampled_tasks(experiment, step, range(2, 5)), CPU, end_step=5) as ahead:
        for step in range(5):
            assert same_batch(ahead.batch(step), meta_batch(experiment, step, range(2, 5))), step
    assert not prefetch_threads()


def test_training_with_prefetch_on_is_bit_identical_to_off_and_leaves_no_thread(tmp_path):
    on = train(tiny_run(tmp_path / "on", "train.prefetch=on"), print_fn=quiet, final_eval=False)
    off = train(tiny_run(tmp_path / "off", "train.prefetch=off"), print_fn=quiet, final_eval=False)
    assert all(torch.equal(on.meta_params[k], off.meta_params[k]) for k in off.meta_params)
    assert losses(tmp_path / "on") == losses(tmp_path / "off")
    assert not prefetch_threads()


def test_a_rank_step_with_its_share_drawn_ahead_equals_the_step_sampling_in_line():
    experiment = build_experiment(load_config(None, TINY), check_data=False)
    inline, ahead_state = initial_state(experiment), initial_state(experiment)
    with BatchPrefetcher(lambda step: sampled_tasks(experiment, step, range(3, 6)), CPU, end_step=3) as ahead:
        for _ in range(3):
            expected, expected_batch = rank_meta_step(experiment, inline, rank=1, world_size=2)
            metrics, batch = rank_meta_step(experiment, ahead_state, rank=1, world_size=2, batches=ahead)
            assert metrics == expected and same_batch(batch, expected_batch)
    assert all(torch.equal(inline.meta_params[k], ahead_state.meta_params[k]) for k in inline.meta_params)


def test_a_batch_drawn_for_a_step_that_is_not_run_next_is_discarded():
    experiment = build_experiment(load_config(None, TINY), check_data=False)
    drawn: list[int] = []
    drawing_step_4 = threading.Event()

    def sample(step):
        drawn.append(step)
        if step == 4:
            drawing_step_4.set()
            raise DatasetError("/data/omniglot.zip", "does not exist on this node")
        return sampled_tasks(experiment, step)

    with BatchPrefetcher(sample, CPU, end_step=10) as ahead:
        ahead.batch(3)  # draws step 4 ahead, which fails
        assert drawing_step_4.wait(timeout=10)
        # the run goes on at step 7 (a resumed one): step 4's batch and its error are dropped
        assert same_batch(ahead.batch(7), meta_batch(experiment, 7))
    assert drawn[:3] == [3, 4, 7] and not prefetch_threads()


def test_a_run_stopped_and_resumed_with_prefetch_equals_an_uninterrupted_run(tmp_path):
    # the time limit stops the first session at its first log line (step 2), with step 2 drawn
    # ahead and never run; the second session resumes from step 2's checkpoint
    stopped = train(
        tiny_run(tmp_path / "resumed", "train.prefetch=on", "train.time_limit_minutes=1e-9"),
        print_fn=quiet,
        final_eval=False,
    )
    assert stopped.steps == 2
    resumed = train(tiny_run(tmp_path / "resumed", "train.prefetch=on"), print_fn=quiet, final_eval=False)
    whole = train(tiny_run(tmp_path / "whole", "train.prefetch=off"), print_fn=quiet, final_eval=False)
    assert resumed.steps == whole.steps == 8
    assert all(torch.equal(resumed.meta_params[k], whole.meta_params[k]) for k in whole.meta_params)
    assert not prefetch_threads()


def test_a_sampling_error_in_the_thread_is_raised_unchanged_at_the_step_that_needed_it(tmp_path, monkeypatch):
    real = trainer.sampled_tasks
    asked: list[tuple[int, str]] = []

    def data_gone_at_step_3(experiment, step, indices=None):
        asked.append((step, threading.current_thread().name))
        if step == 3:
            raise DatasetError("/data/omniglot/images_background.zip", "does not exist on this node")
        return real(experiment, step, indices)

    monkeypatch.setattr(trainer, "sampled_tasks", data_gone_at_step_3)
    with pytest.raises(DatasetError, match="images_background.zip: does not exist on this node"):
        train(tiny_run(tmp_path / "run", "train.prefetch=on"), print_fn=quiet, final_eval=False)
    # steps 0..2 ran (step 0 drawn in line, 1..3 ahead, in the thread), and step 3 raised the error
    assert [step for step, _ in asked] == [0, 1, 2, 3]
    assert asked[0][1] == threading.current_thread().name
    assert all(thread.startswith(THREAD_NAME) for _, thread in asked[1:])
    assert not prefetch_threads()
