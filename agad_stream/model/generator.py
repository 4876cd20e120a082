"""AGAD generators: images in [-1, 1] to reconstructions in [-1, 1].

Three backbones, as in the paper: ``naive`` (a DCGAN encoder-decoder with a 100-d bottleneck),
``unet`` and ``unetpp`` (UNet++). Widths reproduce the paper's parameter counts at 32x32
grayscale (2.04 M, 7.76 M, 9.04 M); larger inputs get extra down/up stages with widths capped,
because the paper gives no widths beyond 32 px.

"""

from __future__ import annotations

import math
from itertools import pairwise

import torch
from torch import nn

from agad_stream.model.card import ARCHITECTURES, Architecture

LATENT_DIM = 100
MIN_SIZE, MAX_SIZE = 32, 256


def check_image_size(image_size: int) -> int:
    """Return log2(image_size); the networks halve the size stage by stage, so it must be a power of two."""
    depth = int(math.log2(image_size)) if image_size > 0 else 0
    if not MIN_SIZE <= image_size <= MAX_SIZE or 2**depth != image_size:
        raise ValueError(f"image size must be a power of two from {MIN_SIZE} to {MAX_SIZE}, got {image_size}")
    return depth


def dcgan_widths(image_size: int, width: int, max_width: int) -> list[int]:
    """Channel widths of a DCGAN pyramid that halves ``image_size`` down to 4x4."""
    stages = check_image_size(image_size) - 2
    return [min(width * 2**i, max_width) for i in range(stages)]


def dcgan_encoder(channels: int, widths: list[int]) -> nn.Sequential:
    """Conv 4/2/1 + LeakyReLU, then Conv-BatchNorm-LeakyReLU per width, then a 4x4 conv to the code.

    Shared by the naive generator's encoder and the discriminator's feature extractor.
    """
    layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
    for c_in, c_out in pairwise(widths):
        layers += [
            nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.LeakyReLU(0.2, True),
        ]
    layers.append(nn.Conv2d(widths[-1], LATENT_DIM, 4, 1, 0, bias=False))
    return nn.Sequential(*layers)


class NaiveGenerator(nn.Module):
    """DCGAN encoder to a code (the paper's: 100-d) and a mirrored decoder (the paper's choice for MNIST)."""

    def __init__(
        self,
        image_size: int,
        channels: int,
        width: int = 64,
        max_width: int = 512,
    ) -> None:
        super().__init__()
        widths = dcgan_widths(image_size, width, max_width)
        decoder: list[nn.Module] = [
            nn.ConvTranspose2d(LATENT_DIM, widths[-1], 4, 1, 0, bias=False),
            nn.BatchNorm2d(widths[-1]),
            nn.ReLU(True),
        ]
        for c_in, c_out in zip(widths[::-1], widths[::-1][1:], strict=False):
            decoder += [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(True),
            ]
        decoder += [nn.ConvTranspose2d(widths[0], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.encoder = dcgan_encoder(channels, widths)
        self.decoder = nn.Sequential(*decoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by normalisation and ReLU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(True),
        )


def _unet_widths(image_size: int, base: int, max_width: int) -> list[int]:
    levels = check_image_size(image_size)  # 32 px -> 5 levels, bottleneck at 2x2
    return [min(base * 2**i, max_width) for i in range(levels)]


class UNetGenerator(nn.Module):
    """U-Net with transposed-convolution upsampling and skip connections at every level."""

    def __init__(
        self,
        image_size: int,
        channels: int,
        base: int = 32,
        max_width: int = 512,
    ) -> None:
        super().__init__()
        widths = _unet_widths(image_size, base, max_width)
        self.down = nn.ModuleList(
            [DoubleConv(channels, widths[0])] + [DoubleConv(c_in, c_out) for c_in, c_out in pairwise(widths)]
        )
        self.up = nn.ModuleList(
            [
                nn.ConvTranspose2d(c_in, c_out, 2, 2)
                for c_in, c_out in zip(widths[:0:-1], widths[-2::-1], strict=True)
            ]
        )
        self.merge = nn.ModuleList([DoubleConv(2 * c, c) for c in widths[-2::-1]])
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Sequential(nn.Conv2d(widths[0], channels, 1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)


class UNetPlusPlusGenerator(nn.Module):
    """UNet++: nested dense skip pathways; node (i, j) sees every earlier node at level i."""

    def __init__(
        self,
        image_size: int,
        channels: int,
        base: int = 32,
        max_width: int = 512,
    ) -> None:
        super().__init__()
        widths = _unet_widths(image_size, base, max_width)
        self.levels = len(widths)
        self.pool = nn.MaxPool2d(2)
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        nodes: dict[str, nn.Module] = {}
        for i, width in enumerate(widths):
            nodes[f"{i}_0"] = DoubleConv(channels if i == 0 else widths[i - 1], width)
        for j in range(1, self.levels):
            for i in range(self.levels - j):
                nodes[f"{i}_{j}"] = DoubleConv(widths[i] * j + widths[i + 1], widths[i])
        self.nodes = nn.ModuleDict(nodes)
        self.head = nn.Sequential(nn.Conv2d(widths[0], channels, 1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid: dict[tuple[int, int], torch.Tensor] = {}
        for i in range(self.levels):
            grid[i, 0] = self.nodes[f"{i}_0"](x if i == 0 else self.pool(grid[i - 1, 0]))
        for j in range(1, self.levels):
            for i in range(self.levels - j):
                inputs = [grid[i, k] for k in range(j)] + [self.upsample(grid[i + 1, j - 1])]
                grid[i, j] = self.nodes[f"{i}_{j}"](torch.cat(inputs, dim=1))
        return self.head(grid[0, self.levels - 1])


def build_generator(
    arch: Architecture,
    image_size: int,
    channels: int,
) -> nn.Module:
    """The generator named by ``arch`` for square ``image_size`` inputs with 1 or 3 ``channels``."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (colour), got {channels}")
    if arch == "naive":
        return NaiveGenerator(image_size, channels)
    if arch == "unet":
        return UNetGenerator(image_size, channels)
    if arch == "unetpp":
        return UNetPlusPlusGenerator(image_size, channels)
    raise ValueError(f"unknown generator {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
