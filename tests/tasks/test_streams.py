"""Counter-based task streams: any share of a meta-batch's tasks is drawn in one call, identically."""

import numpy as np
import pytest

from distmeta.tasks.streams import choose_distinct, permutations, task_bytes, task_uniforms


@pytest.mark.parametrize("draws", [1, 3, 4, 22])
def test_any_run_of_tasks_gets_the_numbers_the_whole_stream_gives_them(draws):
    whole = task_uniforms(seed=9, first=0, num_tasks=10, draws=draws)
    assert whole.shape == (10, draws) and (0 <= whole).all() and (whole < 1).all()
    for first, count in [(0, 1), (3, 4), (7, 3), (9, 1)]:
        assert np.array_equal(task_uniforms(9, first, count, draws), whole[first : first + count])
    bytes_whole = task_bytes(9, 0, 10, 4 * draws + 3)
    assert np.array_equal(task_bytes(9, 3, 5, 4 * draws + 3), bytes_whole[3:8])


def test_seeds_and_parts_give_unrelated_numbers():
    first = task_uniforms(1, 0, 200, 5)
    for other in (task_uniforms(2, 0, 200, 5), task_uniforms(1, 0, 200, 5, part=1)):
        assert abs(np.corrcoef(first.ravel(), other.ravel())[0, 1]) < 0.05
    assert not np.array_equal(task_bytes(1, 0, 2, 64), task_bytes(1, 0, 2, 64, part=1))


def test_bytes_are_uniform():
    counts = np.bincount(task_bytes(3, 0, 100, 2560).ravel(), minlength=256)
    assert counts.min() > 0.8 * 1000 and counts.max() < 1.2 * 1000


def test_distinct_choices_are_distinct_in_range_and_uniform():
    uniforms = task_uniforms(4, 0, 20000, 3)
    chosen = choose_distinct(uniforms, 5)
    assert chosen.min() == 0 and chosen.max() == 4
    assert all(len(set(row)) == 3 for row in chosen.tolist())
    # every ordered triple of 5 values (60 of them) equally likely
    codes = chosen @ np.array([25, 5, 1])
    counts = np.bincount(codes, minlength=125)[np.unique(codes)]
    assert len(counts) == 60 and counts.min() > 0.8 * 20000 / 60 and counts.max() < 1.2 * 20000 / 60


def test_distinct_choices_take_each_rows_own_population():
    drawn = choose_distinct(task_uniforms(6, 0, 100, 4).reshape(100, 2, 2), np.array([[2, 7]] * 100))
    assert drawn.shape == (100, 2, 2)
    assert set(drawn[:, 0].ravel().tolist()) == {0, 1} and drawn[:, 1].max() <= 6
    assert (drawn[:, 0, 0] != drawn[:, 0, 1]).all() and (drawn[:, 1, 0] != drawn[:, 1, 1]).all()


def test_permutations_are_permutations():
    orders = permutations(task_uniforms(7, 0, 50, 5))
    assert all(sorted(row) == list(range(5)) for row in orders.tolist())
