"""`distmeta bench` on a real local Ray cluster (2 CPUs, gloo), called as the command line is."""

import json

import pytest

from distmeta.benchmarking import scaling
from distmeta.cli import main
from distmeta.config import load_config
from distmeta.errors import NonFiniteLossError
from distmeta.runtime.launcher import ClusterRequest

TINY = ["--task", "sine", "--steps", "3", "--warmup", "1", "--meta-batch", "4", "--set", "model.hidden_sizes=[16, 16]"]


def test_a_tiny_bench_of_one_and_two_workers_reports_measured_scaling(cluster, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--workers", "1,2", *TINY, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "weak scaling, 4 tasks per worker" in printed and "efficiency" in printed and "all-reduce" in printed
    report = json.loads(out.read_text())
    assert (tmp_path / "bench.png").stat().st_size > 0
    assert report["request"]["task"] == "sinusoid" and report["request"]["inner_loops"] == "vmap"
    assert {"platform", "cpu_count", "torch", "ray", "device_names"} <= set(report["machine"])
    one, two = report["results"]
    assert (one["workers"], one["global_batch"], two["workers"], two["global_batch"]) == (1, 4, 2, 8)
    assert two["per_worker_batch"] == 4 and two["steps"] == 3 and len(two["raw"]["ranks"]) == 2
    assert [d["rank"] for d in two["devices"]] == [0, 1]
    for result in report["results"]:
        # throughput and efficiency follow from the JSON's own measured wall times
        assert result["wall_s"] == pytest.approx(sum(result["raw"]["step_s"]))
        assert result["tasks_per_s"] == pytest.approx(result["global_batch"] * 3 / result["wall_s"])
        # the phases cover the step but for the statements between them
        assert 0.9 < sum(phase["share"] for phase in result["phases"].values()) <= 1.0
    assert one["efficiency"] == pytest.approx(1.0)
    assert two["efficiency"] == pytest.approx(two["tasks_per_s"] / (2 * one["tasks_per_s"]))


def test_a_worker_count_the_cluster_cannot_hold_is_refused_before_anything_runs(cluster, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(scaling, "measure", lambda *_: pytest.fail("a worker count ran"))
    out = tmp_path / "bench.json"
    assert main(["bench", "--workers", "1,64", *TINY, "--json", str(out)]) == 2
    error = capsys.readouterr().err
    assert (
        "--workers: 64 worker(s) x (1 CPU, 0 GPU) do not fit: the cluster holds at most 2 such worker(s); "
        "its nodes now: head (2 CPU, 0 GPU)"
    ) in error
    assert not out.exists()


def test_strong_scaling_refuses_more_workers_than_tasks_before_ray_is_asked(tmp_path, capsys):
    assert main(["bench", "--scaling", "strong", "--workers", "1,4", *TINY[:-2], "--meta-batch", "2"]) == 2
    assert "train.meta_batch_size: 2 tasks cannot be shared among 4 workers" in capsys.readouterr().err


def test_missing_omniglot_data_is_named_on_the_driver(tmp_path, capsys):
    missing = tmp_path / "omniglot-nowhere"
    assert (
        main(
            [
                "bench",
                "--task",
                "omniglot",
                "--set",
                f"task.omniglot.roots=[{missing}]",
                "--set",
                f"task.omniglot.cache_dir={tmp_path / 'cache'}",
            ]
        )
        == 2
    )
    assert str(missing) in capsys.readouterr().err


def test_omniglot_without_roots_is_benchmarked_on_synthetic_tasks_and_says_so(cluster, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "bench",
                "--task",
                "omniglot",
                "--workers",
                "1",
                "--steps",
                "2",
                "--warmup",
                "0",
                "--meta-batch",
                "2",
                "--set",
                "model.channels=8",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    first_line = capsys.readouterr().out.splitlines()[0]
    assert first_line.startswith("bench: omniglot (SYNTHETIC: random images of its shapes, not the dataset) / maml")
    request = json.loads(out.read_text())["request"]
    assert request["task"] == "omniglot" and request["synthetic_data"] is True
    assert request["data"] == "synthetic: random 28x28 images, 5-way 10-shot, 10 query per class"


@pytest.mark.slow
def test_a_nan_in_a_bench_reaches_the_driver_as_the_workers_own_error(cluster, tmp_path):
    config = load_config(None, ["algorithm.inner_lr=1e30", "train.meta_batch_size=1", "model.hidden_sizes=[8]"])
    with pytest.raises(NonFiniteLossError) as raised:
        scaling.measure(config, ClusterRequest(workers=1), scaling.BenchRequest(steps=1, warmup=0), tmp_path)
    assert raised.value.step == 0 and raised.value.task_seed is not None
