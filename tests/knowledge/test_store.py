"""The store: Parquet round trip, config hash, staleness, corrupt files, concurrent writers, sharded writers."""

import threading
from dataclasses import replace

import pytest
import torch

from distmeta.config import config_hash
from distmeta.errors import KnowledgeBaseError
from distmeta.knowledge import KnowledgeStore
from distmeta.knowledge.records import split_delta
from tests.knowledge.helpers import fill, sinusoid_run


def test_records_round_trip_through_parquet_with_their_header(tmp_path):
    config, experiment, params = sinusoid_run(tmp_path)
    path = fill(tmp_path, config, experiment, params, tasks=6)
    assert path.parent == tmp_path / "knowledge" and path.suffix == ".parquet"
    header, records = KnowledgeStore(tmp_path).load(config_hash(config), 0)
    assert header.config_hash == config_hash(config) and header.step == 0 and header.run == tmp_path.name
    assert records.task_index == list(range(6)) and records.split == ["train"] * 6
    assert records.embedding.shape == (6, header.embedding_size)
    assert records.adapted_delta.shape == (6, sum(p.numel() for p in params.values()))
    delta = split_delta(header, records.adapted_delta[0])
    assert set(delta) == set(params) and all(delta[n].shape == params[n].shape for n in params)
    # adaptation on the support set lowers the query loss on the whole (sinusoid, untrained start)
    assert records.metrics["loss_after"].mean() < records.metrics["loss_before"].mean()


def test_a_file_of_another_config_is_refused_naming_it_and_both_hashes(tmp_path):
    config, experiment, params = sinusoid_run(tmp_path)
    fill(tmp_path, config, experiment, params, tasks=2)
    other_dir = tmp_path / "other"
    other_config, other_experiment, other_params = sinusoid_run(other_dir, ["algorithm.inner_lr=0.02"])
    stranger = fill(other_dir, other_config, other_experiment, other_params, tasks=2)
    stranger.rename(tmp_path / "knowledge" / stranger.name)
    with pytest.raises(
        KnowledgeBaseError, match=f"{stranger.name}.*{config_hash(other_config)}.*{config_hash(config)}"
    ):
        KnowledgeStore(tmp_path).load(config_hash(config), 0)


def test_records_of_an_older_step_are_kept_apart_and_named_stale(tmp_path):
    config, experiment, params = sinusoid_run(tmp_path)
    fill(tmp_path, config, experiment, params, tasks=2, step=100)
    store = KnowledgeStore(tmp_path)
    assert store.steps(config_hash(config)) == [100]
    with pytest.raises(KnowledgeBaseError, match=r"no records of step 200.*\[100\].*stale.*kb build"):
        store.load(config_hash(config), 200)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_corrupt_or_truncated_file_gives_an_error_naming_it_and_leaves_the_others_intact(tmp_path, damage):
    config, experiment, params = sinusoid_run(tmp_path)
    good = fill(tmp_path, config, experiment, params, tasks=3, rank=0, world=2)
    bad = fill(tmp_path, config, experiment, params, tasks=3, rank=1, world=2)
    good_bytes = good.read_bytes()
    content = bad.read_bytes()
    bad.write_bytes({"truncated": content[: len(content) // 2], "garbage": b"not parquet" * 10, "empty": b""}[damage])
    with pytest.raises(KnowledgeBaseError, match=bad.name):
        KnowledgeStore(tmp_path).load(config_hash(config), 0)
    assert good.read_bytes() == good_bytes and bad.exists()
    bad.unlink()
    assert len(KnowledgeStore(tmp_path).load(config_hash(config), 0)[1]) == 2


def test_records_from_two_writers_equal_those_of_one(tmp_path):
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    config, experiment, params = sinusoid_run(one_dir)
    sinusoid_run(two_dir)
    fill(one_dir, config, experiment, params, tasks=7)
    for rank in range(2):
        fill(two_dir, config, experiment, params, tasks=7, rank=rank, world=2)
    assert len(KnowledgeStore(two_dir).files()) == 2
    one = KnowledgeStore(one_dir).load(config_hash(config), 0)[1].sorted_by_task()
    two = KnowledgeStore(two_dir).load(config_hash(config), 0)[1].sorted_by_task()
    assert one.task_seed == two.task_seed and one.task_index == list(range(7))
    assert torch.equal(one.embedding, two.embedding)
    assert torch.equal(one.adapted_delta, two.adapted_delta)
    assert all(torch.equal(one.metrics[name], two.metrics[name]) for name in one.metrics)


def test_concurrent_writers_do_not_corrupt_the_store(tmp_path):
    config, experiment, params = sinusoid_run(tmp_path)
    store = KnowledgeStore(tmp_path)
    fill(tmp_path, config, experiment, params, tasks=4)
    header, records = store.load(config_hash(config), 0)
    errors = []

    def write(writer: int):
        try:
            for _ in range(5):
                store.append(replace(header, writer=f"w{writer}"), records)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.files()) == 1 + 4 * 5
    assert len(store.load(config_hash(config), 0)[1]) == 4 * (1 + 4 * 5)
    assert not [p for p in store.folder.iterdir() if p.name.startswith(".tmp-")]
