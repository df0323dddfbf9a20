"""Distributed meta-training on a real local Ray cluster (2 CPUs, gloo): no mock of Ray."""

import json

import pytest
import torch

from distmeta.cli import main
from distmeta.config import load_config
from distmeta.errors import ConfigError, DatasetError, NonFiniteLossError
from distmeta.runtime.collective import share_of_meta_batch
from distmeta.runtime.launcher import ClusterRequest, train_distributed
from distmeta.training.trainer import train
from tests.conftest import SHARED_OMNIGLOT

TINY = [
    "train.steps=5",
    "train.meta_batch_size=6",
    "train.log_every=5",
    "train.val_every=0",
    "train.checkpoint_every=5",
    "model.hidden_sizes=[16, 16]",
]


def run(storage, name, workers, *overrides):
    config = load_config(None, [*TINY, *overrides])
    request = ClusterRequest(workers=workers, storage=str(storage), name=name)
    return train_distributed(config, request, print_fn=lambda *_: None, final_eval=False)


def test_shares_of_the_meta_batch_cover_it_once():
    shares = [share_of_meta_batch(25, rank, 4) for rank in range(4)]
    assert [len(s) for s in shares] == [6, 6, 6, 7]
    assert sorted(i for s in shares for i in s) == list(range(25))


def in_process(storage, name, *overrides):
    """The one-process reference run (no Ray): a one-worker run on Ray equals it bit for bit."""
    config = load_config(None, [*TINY, *overrides, f"train.run_dir={storage / name}"])
    return train(config, print_fn=lambda *_: None, final_eval=False)


@pytest.fixture(scope="module")
def two_workers(cluster, tmp_path_factory):
    """TINY on two workers, logging every step: several tests below read this one run."""
    storage = tmp_path_factory.mktemp("two-workers")
    return run(storage, "two", 2, "train.log_every=1", *VALIDATED)


VALIDATED = ["train.val_every=5", "train.val_tasks=9"]  # 9: shares of 4 and 5 tasks


def validations(run_dir) -> list[tuple[int, float, float]]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["val_mse"], r["val_mse_ci95"]) for r in records if "val_mse" in r]


def test_two_workers_with_half_the_batch_each_equal_one_worker_with_all(cluster, two_workers, tmp_path):
    one = run(tmp_path, "one", 1, *VALIDATED)
    assert one.steps == two_workers.steps == 5
    for name in one.meta_params:
        torch.testing.assert_close(two_workers.meta_params[name], one.meta_params[name], atol=1e-5, rtol=0)
    # each worker validated on its share of the tasks; gathered, they are the one worker's figures
    (step, mse, ci95), *_ = validations(two_workers.run_dir)
    assert [v[0] for v in validations(one.run_dir)] == [step] == [5]
    assert (mse, ci95) == pytest.approx(validations(one.run_dir)[0][1:], rel=1e-5)
    # one worker on Ray is the one-process run, bit for bit: the tests below compare with that
    single = in_process(tmp_path, "single")
    assert all(torch.equal(single.meta_params[k], one.meta_params[k]) for k in single.meta_params)


def test_two_workers_stop_together_where_the_leader_decides_with_its_checkpoint_the_last(cluster, tmp_path):
    # the time limit is used up at once: the leader says so at the first log interval, and the
    # other rank, which keeps no clock, stops there too (else it would wait in the next all-reduce)
    result = run(
        tmp_path,
        "stopped",
        2,
        "train.steps=50",
        "train.log_every=2",
        "train.checkpoint_every=0",
        "train.time_limit_minutes=1e-9",
    )
    assert result.steps == 2
    records = [json.loads(line) for line in (tmp_path / "stopped" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2] and "time_limit_minutes" in records[0]["stopped"]


@pytest.mark.skipif(not SHARED_OMNIGLOT.is_dir(), reason=f"needs the Omniglot subsets in {SHARED_OMNIGLOT}")
def test_two_protonet_workers_equal_one_on_omniglot(cluster, tmp_path):
    omniglot = [
        "task.name=omniglot",
        f"task.omniglot.roots=[{SHARED_OMNIGLOT / 'images_background_small1.zip'}]",
        f"task.omniglot.cache_dir={tmp_path / 'cache'}",
        "task.ways=3",
        "task.query_shots=2",
        "algorithm.name=protonet",
        "model.channels=8",
        "train.meta_batch_size=4",
        # Adam would turn rounding noise into full steps on the conv biases, whose gradient
        # under batch norm is zero but for rounding: plain SGD compares the aggregation itself
        "train.meta_optimizer=sgd",
        "train.meta_lr=0.1",
    ]
    one = in_process(tmp_path, "one", *omniglot)
    two = run(tmp_path, "two", 2, *omniglot)
    for name in one.meta_params:
        torch.testing.assert_close(two.meta_params[name], one.meta_params[name], atol=1e-5, rtol=0)


@pytest.mark.slow
def test_two_mmaml_workers_equal_one_on_multimodal_regression(cluster, tmp_path):
    multimodal = [
        "task.name=multimodal",
        "task.modes=[sinusoid, linear, quadratic]",
        "task.shots=5",
        "algorithm.name=mmaml",
        "train.steps=3",
        "train.checkpoint_every=3",
        "train.log_every=3",
        "train.val_tasks=9",  # shares of 4 and 5 tasks, for the validation and its conditioning spread
    ]
    one = in_process(tmp_path, "one", *multimodal)
    two = run(tmp_path, "two", 2, *multimodal)
    assert any(name.startswith("encoder.") for name in one.meta_params)
    for name in one.meta_params:
        torch.testing.assert_close(two.meta_params[name], one.meta_params[name], atol=1e-5, rtol=0)
    # the spread of the FiLM outputs over the validation tasks: each worker computed its share's
    spreads = [last_record(result.run_dir) for result in (one, two)]
    for key in ("val_conditioning_std", "val_conditioning_mean_abs"):
        assert spreads[1][key] == pytest.approx(spreads[0][key], rel=1e-5) and spreads[0][key] > 0


def last_record(run_dir) -> dict:
    return json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])


def test_a_run_leaves_metrics_tensorboard_logs_and_a_summary(two_workers):
    run_dir = two_workers.run_dir
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["workers"] == 2 and summary["devices"] == ["cpu", "cpu"] and summary["steps"] == 5
    assert two_workers.summary == summary
    # tasks/s is the training loop's rate, as the progress lines show it, not diluted by Ray's start-up
    assert summary["tasks_per_s"] == records[-1]["mean_tasks_per_s"]
    assert summary["tasks_per_s"] > summary["steps"] * 6 / summary["wall_time_s"]


def test_the_same_config_and_workers_give_bit_identical_parameters(cluster, two_workers, tmp_path):
    again = run(tmp_path, "again", 2, "train.log_every=1")
    assert all(torch.equal(again.meta_params[k], two_workers.meta_params[k]) for k in again.meta_params)


@pytest.mark.slow
def test_a_nan_loss_fails_the_run_once_with_the_workers_own_error_and_its_fields(cluster, tmp_path):
    with pytest.raises(NonFiniteLossError) as single:
        train(
            load_config(None, [*TINY, "algorithm.inner_lr=1e30", f"train.run_dir={tmp_path / 'single'}"]),
            print_fn=lambda *_: None,
            final_eval=False,
        )
    with pytest.raises(NonFiniteLossError, match="meta-loss is .* at step") as distributed:
        run(tmp_path, "nan", 2, "algorithm.inner_lr=1e30", "train.checkpoint_every=1")
    # the same step and task as in one process: the fields crossed Ray with the type
    assert (distributed.value.step, distributed.value.task_seed) == (single.value.step, single.value.task_seed)


def test_more_workers_than_the_cluster_holds_are_refused_saying_what_it_has(cluster, tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"3 worker\(s\) x \(1 CPU, 0 GPU\) do not fit: the cluster holds at most "
        r"2 such worker\(s\); its nodes now: head \(2 CPU, 0 GPU\); no autoscaler",
    ):
        run(tmp_path, "big", 3)
    assert not list((tmp_path / "big").glob("checkpoint_*"))


def test_an_invalid_config_value_fails_before_ray_is_asked_for_anything(tmp_path):
    with pytest.raises(ConfigError, match="algorithm.inner_lr"):
        run(tmp_path, "bad", 2, "algorithm.inner_lr=-1")


@pytest.mark.parametrize("command", ["train", "tune", "bench"])
def test_more_than_one_gpu_per_worker_is_refused_with_the_reason(command, tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("algorithm.inner_lr: {grid: [0.01]}\n")
    options = {
        "train": ["--storage", str(tmp_path)],
        "tune": ["--space", str(space), "--storage", str(tmp_path)],
        "bench": ["--workers", "1"],
    }[command]
    assert main([command, "--gpus-per-worker", "2", *options]) == 2
    assert (
        "--gpus-per-worker: must be 0 or 1, got 2: a worker trains on one device, so further GPUs would sit "
        "idle; use more workers instead"
    ) in capsys.readouterr().err


def test_unwritable_storage_is_refused_naming_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("storage cannot be made under a file, even by root")
    with pytest.raises(ConfigError, match="--storage: .*a-file/runs is not writable"):
        run(blocker / "runs", "x", 1)


def test_a_storage_uri_of_no_bucket_scheme_is_refused_with_what_to_use_instead(tmp_path):
    with pytest.raises(ConfigError, match="--storage: ftp://host/runs: a local path or a bucket URI"):
        run("ftp://host/runs", "x", 1)


def test_a_corrupt_omniglot_file_fails_on_the_driver_naming_it_and_leaves_nothing(tmp_path):
    corrupt = tmp_path / "images_background.zip"
    corrupt.write_bytes(b"PK\x03\x04 this is not really a zip archive")
    with pytest.raises(DatasetError, match="images_background.zip"):
        run(
            tmp_path / "runs",
            "corrupt",
            2,
            "task.name=omniglot",
            f"task.omniglot.roots=[{corrupt}]",
            f"task.omniglot.cache_dir={tmp_path / 'cache'}",
        )
    assert not (tmp_path / "runs").exists()
