"""MMAML (Vuorio et al., 2019): a support-set encoder modulates the network, then MAML steps.

A task's support set goes through an encoder whose output is one FiLM scale and shift per
modulated feature (a hidden unit, or a channel); each modulated layer computes
(1 + scale) * h + shift of its output h, before its ReLU. The modulated network
then takes the usual inner gradient steps on the support set; the modulation stays fixed
during them (as in the paper, it is the prior that is task-specific; the steps adapt the
weights). The encoder's weights are meta-parameters under `encoder.`, learned through
the query loss with the rest, second order unless `first_order`. A scale of 1 + output
(rather than the output itself) makes a zero encoder output the unmodulated MAML network.

Two networks are modulated:
- the regression MLP (the MMAML paper's multimodal regression), encoded over the (x, y) pairs by
  `distmeta.models.set_encoder.SetEncoder` (`algorithm.mmaml.encoder: set`, the default) or by the
  authors' bidirectional LSTM, `distmeta.models.sequence_encoder.SequenceEncoder` (`lstm`),
  every hidden layer modulated;
- Conv4 (images), encoded by `distmeta.models.conv_set_encoder.ConvSetEncoder` over the support
  images, each block's channels modulated after its batch norm and before its pooling and ReLU,
  as in the MMAML authors' image code: after the batch norm, because batch norm normalises each
  channel over the batch and would undo a per-channel scale and shift put before it; before the
  ReLU, so that a shift can switch a channel off for a task. The image encoder reads no labels,
  so its size does not depend on the number of ways.
`task_conditioning` is the FiLM vector of a task: its spread across tasks shows whether the
encoder tells tasks apart or has collapsed to one modulation for all.
"""

from __future__ import annotations

import copy
from typing import Any, Self

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from distmeta.algorithms.base import MetaAlgorithm, Params
from distmeta.errors import ConfigError
from distmeta.models import Conv4, initial_parameters, sub_params
from distmeta.models.conv_set_encoder import ConvSetEncoder
from distmeta.models.sequence_encoder import SequenceEncoder
from distmeta.models.set_encoder import SetEncoder

ENCODER_HIDDEN = 40
"""Width of the encoder's per-point layers, or of each LSTM direction (the MMAML authors'
regression encoder: 40)."""
REGRESSION_ENCODERS = {"set": SetEncoder, "lstm": SequenceEncoder}
"""`algorithm.mmaml.encoder`: the encoders of a regression support set, by name."""
IMAGE_ENCODER_HIDDEN = 128
"""Width of the image encoder's per-image layer (the MMAML authors' image encoder: 128); its
convolutions have as many channels as the modulated Conv4."""
ENCODER_OUTPUT_SCALE = 0.1
"""The encoder's last layer starts at a tenth of PyTorch's initialisation: a near-identity
modulation, so that meta-training starts from (almost) plain MAML."""


class MMAML(MetaAlgorithm):
    name = "mmaml"
    own_settings = {"mmaml": "encodes the support set into a modulation (algorithm.mmaml)"}

    def __init__(self, *args, encoder: str = "set", **kwargs):
        super().__init__(*args, **kwargs)
        self.encoder = self._build_encoder(encoder)

    @classmethod
    def extra_arguments(cls, settings, output_size: int) -> dict:
        return {"encoder": settings.mmaml.encoder}

    @classmethod
    def check_settings(cls, settings: Any, is_classification: bool, task_name: str) -> None:
        super().check_settings(settings, is_classification, task_name)
        encoder = settings.mmaml.encoder
        if encoder not in REGRESSION_ENCODERS:
            raise ConfigError(
                "algorithm.mmaml.encoder", f"unknown encoder {encoder!r} (choose from {', '.join(REGRESSION_ENCODERS)})"
            )
        if is_classification and encoder != "set":
            raise ConfigError(
                "algorithm.mmaml.encoder",
                f"{encoder!r} encodes regression (x, y) pairs; image tasks use the convolutional encoder "
                "(leave encoder at 'set')",
            )

    def _build_encoder(self, kind: str) -> nn.Module | None:
        """The encoder whose output modulates the model; None for a model with nothing to modulate."""
        if isinstance(self.model, Conv4):
            convolutions = [module for module in self.model.features.modules() if isinstance(module, nn.Conv2d)]
            channels = [conv.out_channels for conv in convolutions]
            return ConvSetEncoder(convolutions[0].in_channels, channels[0], IMAGE_ENCODER_HIDDEN, 2 * sum(channels))
        widths = [module.out_features for module in self.model.features if isinstance(module, nn.Linear)]
        return REGRESSION_ENCODERS[kind](2, ENCODER_HIDDEN, 2 * sum(widths)) if widths else None

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
        """The FiLM vector of the task: scales then shifts of each modulated layer in turn.
        Images are encoded alone; regression points as (x, y) pairs."""
        encoder = self._encoder()
        inputs = support_x if isinstance(encoder, ConvSetEncoder) else torch.cat([support_x, support_y], dim=-1)
        return functional_call(encoder, sub_params(meta_params, "encoder"), (inputs,))

    def _encoder(self) -> nn.Module:
        if self.encoder is None:
            raise ValueError("mmaml modulates hidden linear layers or Conv4 blocks; this model has neither")
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
        """The model with each hidden layer's pre-activation (MLP) or each block's normalised
        channels (Conv4) scaled and shifted by `modulation`, in order."""
        h, offset = x, 0
        for index, module in enumerate(self.model.features):
            if isinstance(module, nn.Linear):
                h = F.linear(h, params[f"features.{index}.weight"], params[f"features.{index}.bias"])
                h, offset = film(h, modulation, offset)
            elif isinstance(module, nn.Sequential):  # a Conv4 block: conv, batch norm, FiLM, pool, ReLU
                # functional_call swaps these modules' weights: the loop's threads each have their own model
                conv, norm, *after = module
                h = functional_call(conv, sub_params(params, f"features.{index}.0"), (h,))
                h = functional_call(norm, sub_params(params, f"features.{index}.1"), (h,))
                h, offset = film(h, modulation, offset)
                for layer in after:
                    h = layer(h)
            else:
                h = module(h)
        return F.linear(h, params["head.weight"], params["head.bias"])


def film(h: torch.Tensor, modulation: torch.Tensor, offset: int) -> tuple[torch.Tensor, int]:
    """(1 + scale) * h + shift, one scale and shift per feature (dimension 1 of `h`), read from
    `modulation` at `offset` (the scales, then the shifts); and the offset of the next layer's."""
    width = h.shape[1]
    scale, shift = modulation[offset : offset + width], modulation[offset + width : offset + 2 * width]
    per_feature = (-1,) + (1,) * (h.dim() - 2)
    return h * (1 + scale.reshape(per_feature)) + shift.reshape(per_feature), offset + 2 * width
