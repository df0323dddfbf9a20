"""A recurrent encoder of a regression support set: the MMAML authors' regression encoder.

A bidirectional two-layer LSTM reads the (x, y) pairs in their order; the task embedding is
the forward direction's last output and the backward direction's first (each direction's
state after it has read every point), and a linear layer maps it to `out_features` numbers
(MMAML's FiLM scales and shifts). As vuoristo/MMAML-Regression's `LSTMEmbeddingModel`
(hidden size 40, two layers, bidirectional).

The cells are written out (one linear layer per direction and layer for the four gates, as
`torch.nn.LSTMCell` computes them) rather than `torch.nn.LSTM`, so that `torch.func.vmap`
runs them over a meta-batch of tasks and `torch.compile` traces them like the rest of the step.
Unlike `SetEncoder`, the embedding depends on the order of the points.
"""

from __future__ import annotations

import torch
from torch import nn


class LSTMDirection(nn.Module):
    """One layer of one direction: (points, in_features) -> (points, hidden), from zero state."""

    def __init__(self, in_features: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Linear(in_features + hidden, 4 * hidden)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        h = inputs.new_zeros(self.hidden)
        c = inputs.new_zeros(self.hidden)
        outputs = []
        for x in inputs.unbind(0):
            input_gate, forget_gate, cell_input, output_gate = self.gates(torch.cat([x, h])).chunk(4)
            c = torch.sigmoid(forget_gate) * c + torch.sigmoid(input_gate) * torch.tanh(cell_input)
            h = torch.sigmoid(output_gate) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs)


class SequenceEncoder(nn.Module):
    """(points, in_features) -> (out_features,): bidirectional LSTM over the points, linear."""

    def __init__(self, in_features: int, hidden: int, out_features: int, layers: int = 2):
        super().__init__()
        widths = [in_features] + [2 * hidden] * (layers - 1)
        self.forward_layers = nn.ModuleList(LSTMDirection(width, hidden) for width in widths)
        self.backward_layers = nn.ModuleList(LSTMDirection(width, hidden) for width in widths)
        self.output = nn.Linear(2 * hidden, out_features)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        h = pairs
        for forward, backward in zip(self.forward_layers, self.backward_layers, strict=True):
            # the backward direction reads the points last to first; flip its outputs back into place
            h = torch.cat([forward(h), backward(h.flip(0)).flip(0)], dim=-1)
        hidden = h.shape[-1] // 2
        embedding = torch.cat([h[-1, :hidden], h[0, hidden:]])
        return self.output(embedding)
