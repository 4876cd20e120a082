"""AGAD discriminator: a DCGAN classifier that also returns its 100-d feature for the latent loss."""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

from agad_stream.model.generator import LATENT_DIM, Norm, check_image_size


class Discriminator(nn.Module):
    """Conv 4/2/1 + LeakyReLU, Conv-BN-LeakyReLU blocks down to 4x4, a conv to the feature z, a linear head.

    ``forward`` returns ``(logit, z)``: the logit says "real", z feeds the latent loss.
    """

    def __init__(
        self,
        image_size: int,
        channels: int,
        norm: Norm = nn.BatchNorm2d,
        width: int = 64,
        max_width: int = 512,
    ) -> None:
        super().__init__()
        stages = check_image_size(image_size) - 2
        widths = [min(width * 2**i, max_width) for i in range(stages)]
        layers: list[nn.Module] = [
            nn.Conv2d(channels, widths[0], 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, True),
        ]
        for c_in, c_out in pairwise(widths):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), norm(c_out), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(widths[-1], LATENT_DIM, 4, 1, 0, bias=False))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.LeakyReLU(0.2, True), nn.Linear(LATENT_DIM, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.features(x).flatten(1)
        return self.classifier(z).squeeze(1), z
