"""Reptile's minibatches of the support set: every class alike, every example once per cycle."""

import torch

from distmeta.algorithms.reptile import minibatch_indices

CPU = torch.device("cpu")


def test_each_minibatch_draws_from_every_class_of_a_class_by_class_support_set():
    labels = torch.arange(5).repeat_interleave(10)  # 5 ways x 10 shots, listed class by class
    batches = minibatch_indices(50, 10, CPU)
    assert len(batches) == 5
    for rows in batches:
        assert torch.equal(torch.bincount(labels[rows], minlength=5), torch.full((5,), 2))
    assert torch.equal(torch.cat(batches).sort().values, torch.arange(50))


def test_no_minibatches_when_the_batch_is_zero_or_the_whole_set():
    assert minibatch_indices(5, 0, CPU) == [None]
    assert minibatch_indices(5, 5, CPU) == [None]
    assert minibatch_indices(5, 10, CPU) == [None]  # 1-shot evaluation of a 10-shot-trained config


def test_a_remainder_that_does_not_fill_a_minibatch_is_left_out():
    batches = minibatch_indices(7, 3, CPU)
    assert [rows.tolist() for rows in batches] == [[0, 2, 4], [1, 3, 5]]
