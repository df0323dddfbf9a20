"""Multimodal regression tasks follow the MMAML authors' generator: modes, ranges, noise."""

import numpy as np
import pytest
import torch

from distmeta.config import load_config
from distmeta.errors import ConfigError
from distmeta.tasks import build_task_distribution, sample_tasks
from distmeta.tasks.multimodal import MODE_SETS, MODES, MultimodalTasks


def _points(batch):
    x = torch.cat([batch.support_x, batch.query_x], 1).squeeze(-1).double().numpy()
    y = torch.cat([batch.support_y, batch.query_y], 1).squeeze(-1).double().numpy()
    return x, y


def _fit(mode: str, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Max residual of the best function of `mode` through noiseless points, and its coefficients.
    Nonlinear parameters (phase, center) are found by a grid, the linear ones by least squares."""

    def best_of(designs):
        best = (np.inf, None, None)
        for key, design in designs:
            design = np.stack(design, 1)
            coef, *_ = np.linalg.lstsq(design, y, rcond=None)
            best = min(best, (np.abs(design @ coef - y).max(), coef, key), key=lambda triple: triple[0])
        return best

    if mode == "linear":
        return best_of([(None, [x, np.ones_like(x)])])[:2]
    if mode == "quadratic":
        return best_of([(None, [x * x, x, np.ones_like(x)])])[:2]
    if mode == "sinusoid":
        return best_of([(None, [np.sin(x), np.cos(x)])])[:2]
    shape = np.tanh if mode == "tanh" else np.abs
    centers = np.linspace(-3, 3, 601)
    for width in (0.01, 1e-4):  # a coarse grid of centers, then two finer ones around the best
        _, _, center = best_of([(c, [shape(x - c), np.ones_like(x)]) for c in centers])
        centers = np.linspace(center - width, center + width, 201)
    residual, coef, center = best_of([(c, [shape(x - c), np.ones_like(x)]) for c in centers])
    assert abs(center) <= 3 + 1e-3
    return residual, coef


def test_the_same_seed_gives_identical_tasks_and_modes():
    tasks = MultimodalTasks(5, 7, MODE_SETS[3])
    a, b = tasks.sample(6, 11), tasks.sample(6, 11)
    for x, y in zip(a.tensors(), b.tensors()):
        assert torch.equal(x, y)
    assert torch.equal(a.modes, b.modes) and a.support_x.shape == (6, 5, 1) and a.query_y.shape == (6, 7, 1)


def test_every_mode_is_its_function_family_within_the_authors_ranges():
    batch = MultimodalTasks(40, 40, MODES, noise_std=0.0).sample(60, 3)
    x, y = _points(batch)
    for index, mode in enumerate(MODES):
        assert x.min() >= -5 and x.max() <= 5
        chosen = (batch.modes == index).nonzero().flatten().tolist()
        assert chosen, f"no task of mode {mode} among 60"
        for task in chosen[:4]:
            residual, coef = _fit(mode, x[task], y[task])
            assert residual < 1e-4, f"{mode} task {task} is not a {mode} function (residual {residual})"
            if mode == "sinusoid":
                assert 0.1 - 1e-4 <= np.hypot(*coef) <= 5.0 + 1e-4
            elif mode == "linear":
                assert abs(coef[0]) <= 3 + 1e-4 and abs(coef[1]) <= 3 + 1e-4
            elif mode == "quadratic":
                assert 0.02 - 1e-5 <= abs(coef[0]) <= 0.15 + 1e-5
                center = -coef[1] / (2 * coef[0])
                assert abs(center) <= 3 + 1e-3 and abs(coef[2] - coef[0] * center**2) <= 3 + 1e-3
            else:
                assert abs(coef[0]) <= 3 + 1e-3 and abs(coef[1]) <= 3 + 1e-3


def test_a_tasks_family_is_the_name_of_the_mode_it_was_drawn_from():
    for modes in (MODE_SETS[2], MODE_SETS[5]):
        tasks = MultimodalTasks(5, 5, modes)
        for seed in range(20):
            assert tasks.task_family(seed) == modes[int(tasks.sample(1, seed).modes[0])]


def test_modes_are_drawn_uniformly_from_the_configured_set():
    batch = MultimodalTasks(1, 1, MODE_SETS[2]).sample(2000, 0)
    counts = torch.bincount(batch.modes, minlength=2)
    assert counts.tolist() != [2000, 0] and abs(counts[0].item() - 1000) < 120
    assert set(batch.modes.tolist()) == {0, 1}


def test_outputs_carry_gaussian_noise_of_the_configured_std():
    clean = MultimodalTasks(20, 20, ("linear",), noise_std=0.0).sample(300, 5)
    noisy = MultimodalTasks(20, 20, ("linear",), noise_std=0.3).sample(300, 5)
    # the same seed draws the same functions and inputs; noise is drawn after them, per task
    assert torch.equal(clean.support_x, noisy.support_x)
    noise = (noisy.support_y - clean.support_y).double()
    assert abs(noise.std().item() - 0.3) < 0.01 and abs(noise.mean().item()) < 0.01


def test_the_mode_is_never_one_of_the_learners_inputs_and_survives_sharing_out():
    config = load_config(overrides=["task.name=multimodal", "task.modes=[sinusoid, linear, quadratic]"])
    tasks = build_task_distribution(config, "train")
    whole = sample_tasks(tasks, 0, "train", 2, range(6))
    assert len(whole.tensors()) == 4 and whole.modes.shape == (6,)
    halves = [whole.select(0, 3), whole.select(3, 6)]
    assert torch.equal(torch.cat([h.modes for h in halves]), whole.modes)
    assert not config.is_classification and config.model_name == "mlp"


@pytest.mark.parametrize(
    "override, field",
    [
        ("task.modes=[sinusoid, sawtooth]", "task.modes[1]"),
        ("task.modes=[]", "task.modes"),
        ("task.modes=[linear, linear]", "task.modes"),
        ("task.noise_std=-0.1", "task.noise_std"),
    ],
)
def test_bad_multimodal_settings_are_refused_naming_the_field(override, field):
    with pytest.raises(ConfigError) as error:
        load_config(overrides=["task.name=multimodal", override])
    assert error.value.field == field
