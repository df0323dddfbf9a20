"""Reptile's minibatches of the support set: every class alike, every example in a cycle."""

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


def test_every_example_and_class_is_in_a_minibatch_when_the_batch_does_not_divide_the_support_set():
    labels = torch.arange(5).repeat_interleave(5)  # 5 ways x 5 shots, batches of 10 (the paper's Omniglot setting)
    batches = minibatch_indices(25, 10, CPU)
    assert [len(rows) for rows in batches] == [10, 10, 10]
    assert torch.equal(torch.cat(batches).unique(), torch.arange(25))  # the last class too
    for rows in batches:
        assert torch.bincount(labels[rows], minlength=5).min() >= 1


def test_a_remainder_wraps_round_to_the_first_examples():
    batches = minibatch_indices(7, 3, CPU)
    assert [rows.tolist() for rows in batches] == [[0, 3, 6], [1, 4, 2], [5, 0, 3]]
