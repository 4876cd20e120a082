"""Model directories for deployment tests, made directly (no training): seconds instead of minutes.

BatchNorm statistics and affine parameters are randomised too: with the fresh-layer defaults
(mean 0, variance 1, weight 1, bias 0) folding BatchNorm into convolutions is the identity, and
a wrong fold in an exporter or engine builder would go unnoticed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from agad_stream.model.artifact import save_model
from agad_stream.model.card import MEMORY_METHODS, AnyScore, InputSpec, ModelCard, Threshold
from agad_stream.model.generator import Architecture, build_generator
from agad_stream.model.score import NEEDS_PIXEL_REFERENCE, AnomalyScorer, pixel_reference, residual_map


def make_model_dir(
    directory: Path,
    arch: Architecture = "naive",
    size: int = 32,
    channels: int = 1,
    score: AnyScore = "l2",
    seed: int = 0,
    data: dict[str, Any] | None = None,
    version: str | None = None,
) -> Path:
    """Write weights.safetensors + model.json of a randomly initialised generator into ``directory``.

    Memory scores get a memory of the codes of 40 random images (``knn_contrast``: 8 more as
    "defects"), per-pixel scores the residuals of those images as normals, and both a made-up
    reference.
    """
    torch.manual_seed(seed)
    generator = build_generator(arch, size, channels)
    with torch.no_grad():
        for module in generator.modules():
            if isinstance(module, nn.BatchNorm2d):
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
    memory = defect_memory = None
    if score in MEMORY_METHODS:
        generator.eval()
        with torch.no_grad():
            codes = generator.encoder(torch.rand(48, channels, size, size) * 2 - 1).flatten(1)
        memory, defect_memory = codes[:40], codes[40:]
    pixels = None
    if score in NEEDS_PIXEL_REFERENCE:
        generator.eval()
        with torch.no_grad():
            normals = torch.rand(40, channels, size, size) * 2 - 1
            pixels = pixel_reference(residual_map(normals, generator(normals)))
    reference = {
        "l2": (10.0, 2.0),
        "knn_latent": (3.0, 0.5),
        "l2+knn_latent": (0.0, 1.5),
        "local_z": (2.0, 0.5),
    }
    scorer = AnomalyScorer(
        generator, score, memory=memory, reference=reference, defect_memory=defect_memory, pixels=pixels
    )
    card = ModelCard(
        model_version=version or f"test-{arch}-{size}-{score}",
        generator=arch,
        input=InputSpec(image_size=size, channels=channels, colour="gray" if channels == 1 else "rgb"),
        score=scorer.spec(),
        threshold=Threshold(value=1.0, method="fixed for tests"),
        data=data or {"spec": "fmnist:0", "seed": 0},
    )
    return save_model(directory, card, generator.state_dict(), memory, scorer.defect_memory, scorer.pixels)
