"""The LSTM support-set encoder is the MMAML authors' bidirectional two-layer LSTM, and runs under vmap."""

import torch
from torch import nn
from torch.func import functional_call, vmap

from distmeta.models.sequence_encoder import SequenceEncoder


def encoder_and_torch_lstm(hidden: int = 6):
    """A SequenceEncoder and a torch.nn.LSTM (2 layers, bidirectional) holding the same weights."""
    torch.manual_seed(0)
    encoder = SequenceEncoder(2, hidden, 4).double()
    lstm = nn.LSTM(2, hidden, 2, bidirectional=True).double()
    with torch.no_grad():
        for layer in range(2):
            for suffix, directions in (("", encoder.forward_layers), ("_reverse", encoder.backward_layers)):
                gates = directions[layer].gates
                weights = [getattr(lstm, f"weight_{kind}_l{layer}{suffix}") for kind in ("ih", "hh")]
                biases = [getattr(lstm, f"bias_{kind}_l{layer}{suffix}") for kind in ("ih", "hh")]
                gates.weight.copy_(torch.cat(weights, dim=1))
                gates.bias.copy_(biases[0] + biases[1])
    return encoder, lstm


def test_the_embedding_is_torch_lstms_last_forward_and_first_backward_output_as_the_authors_take_it():
    encoder, lstm = encoder_and_torch_lstm()
    pairs = torch.randn(5, 2, dtype=torch.float64)
    outputs, _ = lstm(pairs.view(5, 1, 2))  # (points, batch, 2 * hidden)
    outputs = outputs.view(5, 1, 2, 6)  # as vuoristo/MMAML-Regression's LSTMEmbeddingModel
    embedding = torch.cat([outputs[-1, :, 0], outputs[0, :, 1]], dim=1)[0]
    torch.testing.assert_close(encoder(pairs), encoder.output(embedding))


def test_vmap_over_tasks_gives_each_tasks_own_encoding():
    encoder, _ = encoder_and_torch_lstm()
    tasks = torch.randn(4, 5, 2, dtype=torch.float64)
    params = dict(encoder.named_parameters())
    batched = vmap(lambda pairs: functional_call(encoder, params, (pairs,)))(tasks)
    torch.testing.assert_close(batched, torch.stack([encoder(pairs) for pairs in tasks]))
