"""`distmeta.load(run)` of a learned-optimiser run: a torch.optim optimiser for a user's model."""

import torch

import distmeta
from distmeta.config import load_config
from distmeta.learned_optimizer_runs.trained import TrainedOptimizer
from distmeta.training.trainer import train
from tests.learned_optimizer_runs.conftest import TINY


def test_the_loaded_run_gives_a_torch_optimizer_that_trains_a_fresh_model(tmp_path):
    train(
        load_config(None, [*TINY, "train.steps=10", f"train.run_dir={tmp_path / 'run'}"]),
        print_fn=lambda *_: None,
        final_eval=False,
    )
    trained = distmeta.load(tmp_path / "run")
    assert isinstance(trained, TrainedOptimizer) and trained.step == 10
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    inputs = torch.randn(64, 4)
    targets = inputs.sum(1, keepdim=True)
    optimizer = trained.optimizer(model.parameters())
    assert isinstance(optimizer, torch.optim.Optimizer)
    losses = []
    for _ in range(100):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    # the rule's state (the LSTM's hidden and cell states) lives in the optimiser, per parameter tensor
    assert set(optimizer.state[model[0].weight]) == {"hidden", "cell"}
