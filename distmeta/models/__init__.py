"""Models whose parameters live in a dict and run through `torch.func.functional_call`.

Every model is a `TwoPartModel`, with `features` and `head` submodules: ANIL adapts the
head alone and Prototypical Networks use the features alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.func import functional_call

from distmeta.models.conv4 import Conv4
from distmeta.models.mlp import MLP
from distmeta.models.two_part import TwoPartModel

if TYPE_CHECKING:  # the engine reads the config by attribute; it does not import it at run time
    from distmeta.config import Config

Params = dict[str, torch.Tensor]

__all__ = [
    "Conv4",
    "MLP",
    "TwoPartModel",
    "Params",
    "build_model",
    "initial_parameters",
    "forward",
    "features",
    "head",
    "sub_params",
    "part_names",
]


def build_model(config: Config, output_size: int, image_size: int = 28) -> TwoPartModel:
    """The model named by the config, with `output_size` outputs (ways, or 1 for regression)."""
    if config.model_name == "mlp":
        return MLP(1, config.model.hidden_sizes, output_size)
    return Conv4(1, config.model.channels, output_size, image_size)


def initial_parameters(model: nn.Module, seed: int) -> Params:
    """Parameters drawn from `seed` with PyTorch's default initialisation.

    The global RNG is forked, so that the caller's random state is untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                module.reset_parameters()
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def sub_params(params: Params, prefix: str) -> Params:
    """The entries under `prefix.`, with the prefix stripped."""
    start = len(prefix) + 1
    return {name[start:]: value for name, value in params.items() if name.startswith(prefix + ".")}


def part_names(model: TwoPartModel, part: str) -> set[str]:
    """Names, as in the model's parameter dict, of the parameters of its `features` or `head`."""
    return {f"{part}.{name}" for name, _ in getattr(model, part).named_parameters()}


def forward(model: nn.Module, params: Params, x: torch.Tensor) -> torch.Tensor:
    return functional_call(model, params, (x,))


def features(model: TwoPartModel, params: Params, x: torch.Tensor) -> torch.Tensor:
    return functional_call(model.features, sub_params(params, "features"), (x,))


def head(model: TwoPartModel, params: Params, x: torch.Tensor) -> torch.Tensor:
    return functional_call(model.head, sub_params(params, "head"), (x,))
