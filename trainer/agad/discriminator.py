"""AGAD discriminator: a DCGAN classifier that also returns its 100-d feature for the latent loss."""

from __future__ import annotations

import torch
from torch import nn

from agad_stream.model.generator import LATENT_DIM, dcgan_encoder, dcgan_widths


class Discriminator(nn.Module):
    """Conv 4/2/1 + LeakyReLU, Conv-BN-LeakyReLU blocks down to 4x4, a conv to the feature z, a linear head.

    ``forward`` returns ``(logit, z)``: the logit says "real", z feeds the latent loss.
    """

    def __init__(
        self,
        image_size: int,
        channels: int,
        width: int = 64,
        max_width: int = 512,
    ) -> None:
        super().__init__()
        self.features = dcgan_encoder(channels, dcgan_widths(image_size, width, max_width))
        self.classifier = nn.Sequential(nn.LeakyReLU(0.2, True), nn.Linear(LATENT_DIM, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.features(x).flatten(1)
        return self.classifier(z).squeeze(1), z
