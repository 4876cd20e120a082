"""AGAD losses, per sample, so that normal and labelled-anomalous samples mix in one batch.

Normal x (label 0), generator:
    L_n = w_adv·BCE(D(x̂), real) + w_con·|x − x̂|₁ − w_adcon·|x̂ − G(x̂)|₁ + w_lat·d(z, ẑ)
Anomalous x (label 1), generator: reciprocals of the terms it should make large, so that G fails
to reconstruct x, D calls x̂ fake, and the codes drift apart:
    L_a = w_adv/BCE(D(x̂), real) + w_con/|x − x̂|₁ + w_adcon/|x̂ − G(x̂)|₁ + w_lat/d(z, ẑ)
(the paper names the adversarial, contextual-adversarial and latent reciprocals; we read "G
should fail to reconstruct x" as the reconstruction reciprocal too). Each reciprocal is guarded
by :data:`RECIPROCAL_EPS`, d is the Euclidean distance. Discriminator: normal x is real and x̂
fake; anomalous x is fake.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from trainer.agad.variant import Variant

RECIPROCAL_EPS = 1e-2
"""Guards 1/term in the anomaly loss (the paper guards it without a value)."""


@dataclass
class GeneratorTerms:
    """Per-sample generator loss terms, shape (B,)."""

    adversarial: torch.Tensor
    contextual: torch.Tensor
    contextual_adversarial: torch.Tensor
    latent: torch.Tensor


def _per_sample_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().flatten(1).mean(dim=1)


def generator_terms(
    x: torch.Tensor,
    x_hat: torch.Tensor,
    x_hat2: torch.Tensor | None,
    fake_logit: torch.Tensor | None,
    z_real: torch.Tensor | None,
    z_fake: torch.Tensor | None,
) -> GeneratorTerms:
    zeros = torch.zeros(x.shape[0], device=x.device)
    adversarial = zeros
    latent = zeros
    if fake_logit is not None:
        adversarial = F.binary_cross_entropy_with_logits(
            fake_logit, torch.ones_like(fake_logit), reduction="none"
        )
    if z_real is not None and z_fake is not None:
        difference = z_real - z_fake
        latent = difference.norm(dim=1)
    adcon = _per_sample_l1(x_hat, x_hat2) if x_hat2 is not None else zeros
    return GeneratorTerms(adversarial, _per_sample_l1(x, x_hat), adcon, latent)


def generator_loss(terms: GeneratorTerms, labels: torch.Tensor, variant: Variant) -> torch.Tensor:
    """Mean over the batch of label·L_a + (1 − label)·L_n."""
    v = variant
    normal = (
        v.w_adv * terms.adversarial
        + v.w_con * terms.contextual
        - v.w_adcon * terms.contextual_adversarial
        + v.w_lat * terms.latent
    )
    loss = normal
    if bool(labels.any()):
        eps = RECIPROCAL_EPS
        anomalous = (
            v.w_adv / (terms.adversarial + eps)
            + v.w_con / (terms.contextual + eps)
            + v.w_adcon / (terms.contextual_adversarial + eps)
            + v.w_lat / (terms.latent + eps)
        )
        weight = labels.to(normal.dtype)
        loss = weight * anomalous + (1 - weight) * normal
    return loss.mean()


def discriminator_loss(
    real_logit: torch.Tensor, fake_logit: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Normal: x real and x̂ fake. Anomalous: x fake (its reconstruction carries no signal)."""
    weight = labels.to(real_logit.dtype)
    real_term = F.binary_cross_entropy_with_logits(real_logit, 1 - weight, reduction="none")
    fake_term = F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit), reduction="none")
    return (real_term + (1 - weight) * fake_term).mean()
