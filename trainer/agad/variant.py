"""What one AGAD training run is made of: a small typed configuration, and the named presets.

``default`` is the product: the variant that measured best on held-out dev data, never on test
labels (docs/RESULTS.md says how, and by how much). ``faithful`` is the paper as written (Shi &
Zhang 2023, ../shared/AGAD_METHOD.md); ``adversarial`` the best variant found that keeps the
discriminator. ``autoencoder`` and ``skip-ganomaly`` are baselines trained by the same loop.
What was tried and rejected lives under the git tag ``ablations-2026-12``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, cast

from agad_stream.model.card import (
    ALL_SCORES,
    ARCHITECTURES,
    MEMORY_METHODS,
    SCORE_METHODS,
    AnyScore,
    ScoreMethod,
)
from agad_stream.model.generator import Architecture
from trainer.agad.augment import TURN_SETTINGS, TurnSetting

ScoreSetting = AnyScore | Literal["auto"]
SCORE_SETTINGS: tuple[str, ...] = (*ALL_SCORES, "auto")


@dataclass(frozen=True)
class Variant:
    """Hyper-parameters of one training run; each field says where its value comes from."""

    name: str
    arch: Architecture = "naive"  # the paper's generators: naive, unet, unetpp
    # Loss weights of the paper's L_adv, L_con, L_adcon and L_lat (paper: 1 / 50 / 15 / 5).
    w_adv: float = 1.0
    w_con: float = 50.0
    w_adcon: float = 15.0
    w_lat: float = 5.0
    # Stop gradients through G's first output in the pseudo-anomaly pass G(x̂) (paper silent).
    detach_pseudo: bool = False
    # Re-estimate BatchNorm statistics on normal images after training (paper silent).
    recompute_batchnorm: bool = False
    # Adam at this learning rate, batches of this size, this many labelled anomalies in each (paper).
    lr: float = 2e-4
    batch_size: int = 256
    anomalies_per_batch: int = 32
    # The shipped score: the paper's l2, or auto (trainer/agad/score_choice.py).
    score: ScoreSetting = "l2"
    # Exponential moving average of G's weights, evaluated and saved (0 = off; paper: none).
    ema: float = 0.0
    # Normals of each batch added again turned (by the turns that change the part, measured on its
    # good parts with "auto") or stretched along one axis, labelled anomalous (paper: none).
    turned_anomalies: int = 0
    turns: TurnSetting = "auto"
    stretched_anomalies: int = 0
    # ... stretched only once training has this many good images (0: always; paper: none). With
    # fewer, a stretched part lies closer to good parts G has not seen than they lie to each other.
    stretch_from_normals: int = 0

    def __post_init__(self) -> None:
        """Refuse a choice that would only fail after training, e.g. a typo in ``--set score=...``."""
        choices: dict[str, tuple[str, ...]] = {
            "arch": ARCHITECTURES,
            "score": SCORE_SETTINGS,
            "turns": TURN_SETTINGS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}: choose one of {', '.join(allowed)}")
        if self.batch_size < 2 or self.lr <= 0:
            raise ValueError(
                f"batch_size={self.batch_size}, lr={self.lr}: choose a batch of 2 or more and lr > 0"
            )
        made = (self.turned_anomalies, self.stretched_anomalies)
        if min(made) < 0 or sum(made) >= self.batch_size // 2:
            raise ValueError(
                f"turned_anomalies={made[0]} and stretched_anomalies={made[1]} with batch_size="
                f"{self.batch_size}: choose 0 (off) or, the two together, fewer than half the batch, e.g. "
                f"--set turned_anomalies={self.batch_size // 8} "
                f"--set stretched_anomalies={self.batch_size // 8}"
            )
        if self.stretch_from_normals < 0:
            raise ValueError(f"stretch_from_normals={self.stretch_from_normals}: choose 0 (always) or more")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema={self.ema}: choose 0 (off) or a decay in (0, 1), e.g. 0.95")
        if self.score in MEMORY_METHODS and self.arch != "naive":
            raise ValueError(f"score={self.score} needs the naive generator's code; arch is {self.arch}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def selection_score(self) -> ScoreMethod:
        """The score that chooses the epoch: a memory score is only built after training, so l2."""
        return cast(ScoreMethod, self.score) if self.score in SCORE_METHODS else "l2"

    def for_training_set(self, normals: int) -> tuple[Variant, str | None]:
        """The variant as it trains on ``normals`` good images, and why that differs from this one
        (None: it does not)."""
        if self.stretched_anomalies and normals < self.stretch_from_normals:
            why = (
                f"no stretched anomalies: {normals} good training images, fewer than "
                f"stretch_from_normals={self.stretch_from_normals}"
            )
            return replace(self, stretched_anomalies=0), why
        return self, None

    @property
    def makes_anomalies(self) -> bool:
        """Whether training labels turned or stretched normals anomalous, which teaches G's code shapes."""
        return self.turned_anomalies + self.stretched_anomalies > 0

    @property
    def adversarial(self) -> bool:
        """Whether a discriminator is trained at all."""
        return self.w_adv > 0 or self.w_lat > 0


FAITHFUL = Variant(name="faithful")
# AGAD's generator and its supervised objective without the discriminator and the
# contextual-adversarial pass, taught the part's pose by turned normals labelled anomalous, its
# weights averaged. Stretched normals only on large sets: on small ones they taught G to fail on
# good parts of other proportions (where the line lies: docs/RESULTS.md, "A new line").
DEFAULT = replace(
    FAITHFUL,
    name="default",
    w_adv=0.0,
    w_con=1.0,
    w_adcon=0.0,
    w_lat=0.0,
    score="auto",
    turned_anomalies=32,
    stretched_anomalies=32,
    stretch_from_normals=2000,
    ema=0.98,
)
PRESETS: dict[str, Variant] = {
    "default": DEFAULT,
    "faithful": FAITHFUL,
    # The paper's losses with the pseudo-anomaly pass detached, BatchNorm statistics re-estimated on
    # normal images and a weight average of G.
    "adversarial": replace(
        FAITHFUL, name="adversarial", detach_pseudo=True, recompute_batchnorm=True, ema=0.98, score="auto"
    ),
    # Skip-GANomaly's losses: AGAD without the contextual-adversarial term, latent weight 1, a UNet.
    "skip-ganomaly": replace(FAITHFUL, name="skip-ganomaly", arch="unet", w_adcon=0.0, w_lat=1.0),
    # Reconstruction only, scored by l2: the floor every learned model must clear.
    "autoencoder": replace(FAITHFUL, name="autoencoder", w_adv=0.0, w_con=1.0, w_adcon=0.0, w_lat=0.0),
}
PER_BATCH_COUNTS = ("anomalies_per_batch", "turned_anomalies", "stretched_anomalies")
"""Counts of images per batch: a batch size set alone keeps their shares of the batch."""


def preset(name: str, **overrides: Any) -> Variant:
    """A named preset with field overrides, e.g. ``preset("faithful", detach_pseudo=True)``.

    A ``batch_size`` override scales the per-batch counts it is not given with it, so that
    ``preset("default", batch_size=64)`` holds 8 turned normals where the preset's 256 hold 32.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown variant {name!r}; choose one of {', '.join(PRESETS)}")
    base = PRESETS[name]
    if "batch_size" in overrides:
        for count in PER_BATCH_COUNTS:
            if count not in overrides and (made := getattr(base, count)):
                overrides[count] = max(1, made * overrides["batch_size"] // base.batch_size)
    return replace(base, **overrides)
