"""A convolutional encoder of an image support set: MMAML's task embedding for images.

As in the MMAML authors' image code (shaohua0116/MMAML-Classification,
`maml/models/conv_embedding_model.py`, their defaults): four 3x3 convolutions of stride 2, each
followed by a ReLU, then the mean over each feature map, a linear layer with a ReLU per image,
the mean over the support images (the task embedding), and a linear layer to `out_features`
numbers (the FiLM scales and shifts). Like theirs, it reads the images alone, not the labels:
the embedding says which kind of task this is, not which class is which, and so it has the
same size for any number of ways. The mean over images makes it independent of their order.

Unlike theirs, there is no batch norm between the convolutions: normalising each channel over
the support set would remove the set's own per-channel statistics, which are what tells one
task's images from another's (and over 1-shot sets of 5 images it is badly conditioned).
"""

from __future__ import annotations

import torch
from torch import nn

CONVOLUTIONS = 4


class ConvSetEncoder(nn.Module):
    """(images, in_channels, height, width) -> (out_features,)."""

    def __init__(self, in_channels: int, channels: int, hidden: int, out_features: int):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_channels
        for _ in range(CONVOLUTIONS):
            layers += [nn.Conv2d(width, channels, kernel_size=3, stride=2, padding=1), nn.ReLU()]
            width = channels
        self.convolutions = nn.Sequential(*layers)
        self.images = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU())
        self.output = nn.Linear(hidden, out_features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        per_image = self.images(self.convolutions(images).mean(dim=(2, 3)))
        return self.output(per_image.mean(dim=0))
