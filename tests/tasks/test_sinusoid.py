"""Sinusoid tasks follow the MAML paper and are fixed by their seed."""

import numpy as np
import torch

from distmeta.config import load_config
from distmeta.tasks import build_task_distribution, meta_batch_seed, sample_tasks, task_seed
from distmeta.tasks.sinusoid import SinusoidTasks


def test_the_same_seed_gives_identical_batches_and_another_seed_does_not():
    tasks = SinusoidTasks(shots=5, query_shots=7)
    a, b, c = tasks.sample(4, 123), tasks.sample(4, 123), tasks.sample(4, 124)
    for x, y in zip(a.tensors(), b.tensors()):
        assert torch.equal(x, y)
    assert not torch.equal(a.support_x, c.support_x)
    assert a.support_x.shape == (4, 5, 1) and a.query_y.shape == (4, 7, 1)


def test_points_lie_on_a_sinusoid_with_the_papers_ranges():
    batch = SinusoidTasks(shots=50, query_shots=50).sample(200, 0)
    x = torch.cat([batch.support_x, batch.query_x], 1).squeeze(-1).double().numpy()
    y = torch.cat([batch.support_y, batch.query_y], 1).squeeze(-1).double().numpy()
    assert x.min() >= -5 and x.max() <= 5
    amplitude = np.abs(y).max(axis=1)
    assert amplitude.max() <= 5.0 + 1e-5 and amplitude.min() >= 0.05
    # every task is A sin(x - phase): fit A cos(phase), -A sin(phase) by least squares, residual ~ 0
    for xi, yi in zip(x[:10], y[:10]):
        design = np.stack([np.sin(xi), np.cos(xi)], 1)
        coef, residual, *_ = np.linalg.lstsq(design, yi, rcond=None)
        assert np.abs(design @ coef - yi).max() < 1e-4
        phase = np.arctan2(-coef[1], coef[0]) % (2 * np.pi)
        assert 0 <= phase <= np.pi + 1e-4


def test_a_meta_batch_is_the_same_tasks_however_it_is_shared_out():
    tasks = build_task_distribution(load_config(), "train")
    whole = sample_tasks(tasks, 0, "train", 7, range(6))
    shares = [sample_tasks(tasks, 0, "train", 7, share) for share in (range(0, 1), range(1, 4), range(4, 6))]
    for whole_tensor, *share_tensors in zip(whole.tensors(), *(share.tensors() for share in shares)):
        assert torch.equal(whole_tensor, torch.cat(share_tensors))
    assert whole.seed == meta_batch_seed(0, "train", 7) == shares[2].seed


def test_task_seeds_differ_across_splits_steps_and_indices():
    seeds = {task_seed(0, split, step, i) for split in ("train", "val", "test") for step in range(3) for i in range(3)}
    assert len(seeds) == 27


def test_meta_batch_seeds_differ_across_runs_splits_and_steps():
    seeds = {
        meta_batch_seed(run, split, step) for run in range(2) for split in ("train", "val", "test") for step in range(3)
    }
    assert len(seeds) == 18


def test_amplitudes_and_phases_are_uniform_over_the_papers_ranges():
    batch = SinusoidTasks(shots=50, query_shots=0).sample(4000, 1)
    x, y = batch.support_x.squeeze(-1).double().numpy(), batch.support_y.squeeze(-1).double().numpy()
    design = np.stack([np.sin(x), np.cos(x)], -1)  # y = A cos(phase) sin(x) - A sin(phase) cos(x)
    coef = np.linalg.solve(design.transpose(0, 2, 1) @ design, (design.transpose(0, 2, 1) @ y[..., None]))[..., 0]
    amplitude, phase = np.hypot(*coef.T), np.arctan2(-coef[:, 1], coef[:, 0])
    assert abs(amplitude.mean() - 2.55) < 0.1 and abs(phase.mean() - np.pi / 2) < 0.05
    assert abs(np.mean(x) - 0.0) < 0.05 and abs(np.var(x) - 100 / 12) < 0.2
