"""MMAML (Vuorio et al., 2019): a support-set encoder modulates the network, then MAML steps.

A task's support set goes through an encoder (`distmeta.models.set_encoder.SetEncoder`)
whose output is one FiLM scale and shift per unit of every hidden layer; each hidden
layer computes (1 + scale) * (W h + b) + shift before its ReLU. The modulated network
then takes the usual inner gradient steps on the support set; the modulation stays fixed
during them (as in the paper, it is the prior that is task-specific; the steps adapt the
weights). The encoder's weights are meta-parameters under `encoder.`, learned through
the query loss with the rest, second order unless `first_order`. A scale of 1 + output
(rather than the output itself) makes a zero encoder output the unmodulated MAML network.

For regression (the MMAML paper's multimodal regression); the MLP is the modulated network.
`task_conditioning` is the FiLM vector of a task: its spread across tasks shows whether the
encoder tells tasks apart or has collapsed to one modulation for all.
"""

from __future__ import annotations

import copy
from typing import Self

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from distmeta.algorithms.base import MetaAlgorithm, Params
from distmeta.errors import ConfigError
from distmeta.models import initial_parameters, sub_params
from distmeta.models.set_encoder import SetEncoder

ENCODER_HIDDEN = 40
"""Width of the encoder's per-point layers (the MMAML authors' regression encoder: 40)."""
ENCODER_OUTPUT_SCALE = 0.1
"""The encoder's last layer starts at a tenth of PyTorch's initialisation: a near-identity
modulation, so that meta-training starts from (almost) plain MAML."""


class MMAML(MetaAlgorithm):
    name = "mmaml"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        hidden = [(index, module) for index, module in enumerate(self.model.features) if isinstance(module, nn.Linear)]
        self.hidden_layers = [index for index, _ in hidden]
        widths = [module.out_features for _, module in hidden]
        # None for a model without hidden linear layers (Conv4): the config check refuses it first
        self.encoder = SetEncoder(2, ENCODER_HIDDEN, 2 * sum(widths)) if widths else None

    @classmethod
    def check_settings(cls, settings, is_classification: bool, task_name: str) -> None:
        if is_classification:
            raise ConfigError(
                "algorithm.name",
                f"mmaml modulates the regression MLP; task {task_name} is a "
                "classification (use protomaml or alfa there)",
            )

    def init_meta_parameters(self, model_params: Params, seed: int = 0) -> Params:
        """The model's parameters, then the encoder's under `encoder.`, drawn from `seed`."""
        like = next(iter(model_params.values()))  # the model's dtype and device
        encoder = {name: value.to(like) for name, value in initial_parameters(self._encoder(), seed + 1).items()}
        encoder["output.weight"] = encoder["output.weight"] * ENCODER_OUTPUT_SCALE
        encoder["output.bias"] = encoder["output.bias"] * ENCODER_OUTPUT_SCALE
        own = super().init_meta_parameters(model_params, seed)
        return {**own, **{f"encoder.{name}": value for name, value in encoder.items()}}

    def using_autograd(self, own_model: bool = True) -> Self:
        """As for every algorithm, and the encoder copied too: `functional_call` swaps the
        parameters of the module it is given, and the loop's threads would share it (a race
        that mixed one thread's float64 weights with another's float32 ones, seen in gpu_smoke)."""
        twin = super().using_autograd(own_model)
        if own_model:
            twin.encoder = copy.deepcopy(self.encoder)
        return twin

    def model_parameters(self, meta_params: Params) -> Params:
        return {
            name: value
            for name, value in super().model_parameters(meta_params).items()
            if not name.startswith("encoder.")
        }

    def task_conditioning(self, meta_params: Params, support_x, support_y) -> torch.Tensor:
        """The FiLM vector of the task: scales then shifts of each hidden layer in turn."""
        pairs = torch.cat([support_x, support_y], dim=-1)
        return functional_call(self._encoder(), sub_params(meta_params, "encoder"), (pairs,))

    def _encoder(self) -> SetEncoder:
        if self.encoder is None:
            raise ValueError("mmaml modulates the hidden linear layers of an MLP; this model has none")
        return self.encoder

    def adapt(self, meta_params: Params, support_x, support_y, steps: int, differentiable: bool) -> Params:
        modulation = self.task_conditioning(meta_params, support_x, support_y)

        def support_loss(params: Params) -> torch.Tensor:
            return self.loss(self.modulated_forward(params, modulation, support_x), support_y)

        start = self.model_parameters(meta_params)
        adapted = self.inner_loop(meta_params, start, lambda step: support_loss, steps, differentiable)
        return {**adapted, "modulation": modulation}

    def predict(self, meta_params: Params, adapted: Params, x: torch.Tensor) -> torch.Tensor:
        params = {name: value for name, value in adapted.items() if name != "modulation"}
        return self.modulated_forward(params, adapted["modulation"], x)

    def modulated_forward(self, params: Params, modulation: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The MLP with every hidden layer's pre-activation scaled and shifted by `modulation`."""
        h, offset = x, 0
        for index, module in enumerate(self.model.features):
            if not isinstance(module, nn.Linear):
                h = module(h)
                continue
            h = F.linear(h, params[f"features.{index}.weight"], params[f"features.{index}.bias"])
            width = h.shape[-1]
            scale, shift = modulation[offset : offset + width], modulation[offset + width : offset + 2 * width]
            h = h * (1 + scale) + shift
            offset += 2 * width
        return F.linear(h, params["head.weight"], params["head.bias"])
