"""benchmarks/quadratic_references.py: the hand-designed methods it runs are the ones it names."""

from __future__ import annotations

import json

import torch

from tests.benchmark_scripts import load_benchmark


def _one_task(dimensions: int = 4, functions: int = 3, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    matrix = torch.randn(1, functions, dimensions, dimensions, generator=generator, dtype=torch.float64)
    target = torch.randn(1, functions, dimensions, generator=generator, dtype=torch.float64)
    theta = 0.01 * torch.randn(1, functions, dimensions, generator=generator, dtype=torch.float64)
    return matrix, target, theta


def _torch_optimiser_losses(script, matrix, target, theta, make_optimizer, steps: int) -> torch.Tensor:
    """Each function's loss after `steps` steps of a torch.optim optimiser on the task's mean loss."""
    parameter = theta.clone().requires_grad_()
    optimizer = make_optimizer([parameter])
    for _ in range(steps):
        optimizer.zero_grad()
        script.function_losses(matrix, target, parameter).mean().backward()
        optimizer.step()
    return script.function_losses(matrix, target, parameter.detach())


def test_heavy_ball_at_each_setting_is_torch_sgd_with_that_momentum():
    script = load_benchmark("quadratic_references")
    matrix, target, theta = _one_task()
    rates, momenta = torch.tensor([0.05, 0.2], dtype=torch.float64), torch.tensor([0.0, 0.9], dtype=torch.float64)
    got = script.heavy_ball_losses(matrix, target, theta, rates, momenta, 20)
    for index in range(2):
        want = _torch_optimiser_losses(
            script,
            matrix,
            target,
            theta,
            lambda p, i=index: torch.optim.SGD(p, lr=rates[i].item(), momentum=momenta[i].item()),
            20,
        )
        torch.testing.assert_close(got[index], want)


def test_adam_at_each_rate_is_torch_adam():
    script = load_benchmark("quadratic_references")
    matrix, target, theta = _one_task()
    rates = torch.tensor([0.01, 0.1], dtype=torch.float64)
    got = script.adam_losses(matrix, target, theta, rates, 15)
    for index in range(2):
        want = _torch_optimiser_losses(
            script, matrix, target, theta, lambda p, i=index: torch.optim.Adam(p, lr=rates[i].item()), 15
        )
        torch.testing.assert_close(got[index], want)


def test_conjugate_gradient_solves_a_well_conditioned_function_in_as_many_steps_as_dimensions():
    script = load_benchmark("quadratic_references")
    matrix, target, theta = _one_task(dimensions=6)
    matrix = matrix + 6 * torch.eye(6, dtype=torch.float64)  # well conditioned
    assert script.conjugate_gradient_losses(matrix, target, theta, 5).max() > 1e-6
    assert script.conjugate_gradient_losses(matrix, target, theta, 6).max() < 1e-18
    assert torch.isfinite(script.conjugate_gradient_losses(matrix, target, theta, 30)).all()  # solved: stays put


def test_the_per_function_oracle_gives_each_function_its_own_best_setting():
    script = load_benchmark("quadratic_references")
    losses = torch.tensor([[[1.0, 4.0]], [[2.0, 2.5]], [[float("nan"), 0.5]]])  # 3 settings, 1 task, 2 functions
    settings = [{"learning_rate": 0.5, "momentum": 0.0}, {"learning_rate": 0.25, "momentum": 0.0}]
    settings.append({"learning_rate": 0.125, "momentum": 0.0})
    per_function = script.per_function_oracle(losses, settings)
    assert per_function["task_means"] == [0.75]  # function 1 at setting 0, function 2 at setting 2
    assert sorted(per_function["settings_picked"].values()) == [1, 1]
    one_setting = script.one_setting_oracle(losses, settings)  # the NaN setting counts as diverged
    assert one_setting["setting"] == settings[1] and one_setting["task_means"] == [2.25]


def test_a_short_run_writes_every_method_with_the_benchmark_tasks_and_command(tmp_path, capsys):
    script = load_benchmark("quadratic_references")
    path = tmp_path / "references.json"
    assert script.main(["--seeds", "2", "--steps", "3", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["command"] == "python benchmarks/quadratic_references.py"
    assert report["seeds"] == script.test_seeds(2)
    assert len(report["methods"]) == 7 and "conjugate gradient, per function, 3 steps" in report["methods"]
    assert all(len(method["task_means"]) == 2 for method in report["methods"].values())
    assert len(report["conditioning"]["singular_value_ratio_max_per_task"]) == 2
    assert "momentum, per function (oracle)" in capsys.readouterr().out
