"""One AGAD training step (paper Algorithm 1): update G on a batch, then D when there is one.

G reconstructs each image; with ``w_adcon`` it also reconstructs its own output (the
contextual-adversarial pseudo-anomaly pass). D, when the variant has one, calls x real and x̂ fake,
and its features of x and x̂ give the latent loss. Losses are in :mod:`trainer.agad.loss`.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from agad_stream.model.generator import build_generator
from trainer.agad.batches import Batch
from trainer.agad.discriminator import Discriminator
from trainer.agad.loss import discriminator_loss, generator_loss, generator_terms
from trainer.agad.variant import Variant

log = logging.getLogger(__name__)

BETA1 = 0.5
"""Adam's first-moment decay, as the GANomaly family uses (the paper names Adam, not its betas)."""
D_REINIT_BELOW = 1e-5
"""D is re-initialised when its loss collapses below this (GANomaly family), else G learns nothing."""


class AgadStep:
    """G (and D, for variants with a discriminator) with their Adam optimisers, on ``device``."""

    def __init__(self, variant: Variant, image_size: int, channels: int, device: torch.device) -> None:
        self.variant = variant
        self.device = device
        self.model = _prepare(build_generator(variant.arch, image_size, channels), device)
        self.discriminator = (
            _prepare(Discriminator(image_size, channels), device) if variant.adversarial else None
        )
        self.opt_g = _adam(self.model, variant.lr)
        self.opt_d = _adam(self.discriminator, variant.lr) if self.discriminator is not None else None

    def train(self) -> None:
        self.model.train()
        if self.discriminator is not None:
            self.discriminator.train()

    def __call__(self, batch: Batch) -> dict[str, float]:
        x, y = (t.to(self.device, non_blocking=True) for t in batch)
        x = x.contiguous(memory_format=torch.channels_last)
        x_hat = self.model(x)
        x_hat2 = None
        if self.variant.w_adcon > 0:
            x_hat2 = self.model(x_hat.detach() if self.variant.detach_pseudo else x_hat)
        fake_logit = z_fake = z_real = real_logit = None
        if self.discriminator is not None:
            fake_logit, z_fake = self.discriminator(x_hat)
            real_logit, z_real = self.discriminator(x)  # also D's real term below: D sees x once
            z_real = z_real.detach()
        terms = generator_terms(x, x_hat, x_hat2, fake_logit, z_real, z_fake)
        g_loss = generator_loss(terms, y, self.variant)
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        losses = {
            "g": g_loss.item(),
            "con": terms.contextual.mean().item(),
            "adcon": terms.contextual_adversarial.mean().item(),
        }
        if self.discriminator is not None and self.opt_d is not None and real_logit is not None:
            fake_logit, _ = self.discriminator(x_hat.detach())
            d_loss = discriminator_loss(real_logit, fake_logit, y)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            losses["d"] = d_loss.item()
            if losses["d"] < D_REINIT_BELOW:
                for module in self.discriminator.modules():
                    if isinstance(module, nn.Conv2d | nn.Linear | nn.BatchNorm2d):
                        module.reset_parameters()
                log.info("discriminator loss collapsed; re-initialised D")
        return losses

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"generator": self.model.state_dict(), "opt_g": self.opt_g.state_dict()}
        if self.discriminator is not None and self.opt_d is not None:
            state.update(discriminator=self.discriminator.state_dict(), opt_d=self.opt_d.state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["generator"])
        self.opt_g.load_state_dict(state["opt_g"])
        if self.discriminator is not None and self.opt_d is not None:
            self.discriminator.load_state_dict(state["discriminator"])
            self.opt_d.load_state_dict(state["opt_d"])

    def companions(self) -> dict[str, Any]:
        return {} if self.discriminator is None else {"discriminator": self.discriminator.state_dict()}


def _prepare(network: nn.Module, device: torch.device) -> nn.Module:
    return network.to(device).to(memory_format=torch.channels_last)


def _adam(network: nn.Module, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(network.parameters(), lr=lr, betas=(BETA1, 0.999))
