"""Do two backends give the same scores? The check behind ``agad export`` and ``deploy/gpu_check``.

Tolerances follow the precision of the candidate: float32 backends must agree with the PyTorch
reference to 1e-4 relative on scores and 1e-3 absolute on heat-maps; half precision and INT8
engines are held to the looser bounds their arithmetic allows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agad_stream.inference import Backend

TOLERANCES: dict[str, tuple[float, float]] = {
    "fp32": (1e-4, 1e-3),
    "fp16": (2e-2, 2e-2),
    "tf32": (2e-2, 2e-2),  # ONNX Runtime's CUDA provider uses TF32 matmuls by default
    "int8": (1e-1, 1e-1),
}
"""precision -> (max relative score difference, max absolute heat-map difference)."""


@dataclass(frozen=True)
class Parity:
    """How far a candidate backend's output is from the reference's on one batch."""

    reference: str
    candidate: str
    batch: int
    score_rel: float
    heatmap_abs: float
    score_tolerance: float
    heatmap_tolerance: float

    @property
    def ok(self) -> bool:
        return self.score_rel <= self.score_tolerance and self.heatmap_abs <= self.heatmap_tolerance

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "MISMATCH"
        return (
            f"{self.candidate} vs {self.reference} (batch {self.batch}): scores max rel diff "
            f"{self.score_rel:.2e} (<= {self.score_tolerance:g}), heat-maps max abs diff "
            f"{self.heatmap_abs:.2e} (<= {self.heatmap_tolerance:g}): {verdict}"
        )


def relative_difference(reference: np.ndarray, candidate: np.ndarray) -> float:
    """max |a - b| / max(|a|, tiny): relative to each score, so small scores count as much as large ones."""
    reference = np.asarray(reference, np.float64)
    candidate = np.asarray(candidate, np.float64)
    scale = np.maximum(np.abs(reference), 1e-12)
    return float(np.max(np.abs(candidate - reference) / scale)) if reference.size else 0.0


def compare(reference: Backend, candidate: Backend, batch: np.ndarray, precision: str = "fp32") -> Parity:
    """Run both backends on ``batch`` and measure the largest score and heat-map differences."""
    ref_scores, ref_maps = reference.predict(batch)
    scores, maps = candidate.predict(batch)
    assert ref_maps is not None and maps is not None
    score_tolerance, heatmap_tolerance = TOLERANCES[precision]
    return Parity(
        reference=_label(reference),
        candidate=_label(candidate),
        batch=len(batch),
        score_rel=relative_difference(ref_scores, scores),
        heatmap_abs=float(np.max(np.abs(ref_maps.astype(np.float64) - maps))) if maps.size else 0.0,
        score_tolerance=score_tolerance,
        heatmap_tolerance=heatmap_tolerance,
    )


def random_batch(batch: int, channels: int, size: int, seed: int = 0) -> np.ndarray:
    """Uniform float32 (batch, channels, size, size) in [-1, 1], the model's input range."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, (batch, channels, size, size)).astype(np.float32)


def _label(backend: Backend) -> str:
    where = backend.details.get("device", "")
    precision = backend.details.get("precision", "")
    return " ".join(part for part in (backend.name, where, precision) if part)
