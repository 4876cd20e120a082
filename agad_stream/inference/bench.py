"""Throughput and latency of inference backends, and what preprocessing costs next to them.

Used by ``agad bench`` and ``deploy/gpu_check``. Timings are wall-clock around ``predict`` (input
copy to the device, inference, and output copy back included: what a scorer pays). Measurements
are taken in rounds that visit every backend and batch size in turn, so a background job that
slows the machine for a while slows all of them alike; each figure is the median over rounds.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from agad_stream.inference.base import Backend
from agad_stream.preprocess import prepare_image, to_model_input


@dataclass
class Timing:
    """Latencies (ms per batch) of one backend at one batch size, gathered over rounds."""

    backend: str
    batch: int
    details: dict[str, str] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    round_images_per_second: list[float] = field(default_factory=list)

    def add_round(self, seconds: Sequence[float]) -> None:
        self.latencies_ms.extend(s * 1000.0 for s in seconds)
        self.round_images_per_second.append(self.batch * len(seconds) / sum(seconds))

    @property
    def images_per_second(self) -> float:
        return statistics.median(self.round_images_per_second)

    @property
    def p50_ms(self) -> float:
        return float(np.percentile(self.latencies_ms, 50))

    @property
    def p99_ms(self) -> float:
        return float(np.percentile(self.latencies_ms, 99))

    @property
    def ms_per_image(self) -> float:
        return 1000.0 / self.images_per_second

    def as_dict(self) -> dict[str, object]:
        return {
            "backend": self.backend,
            "batch": self.batch,
            "details": self.details,
            "images_per_second": round(self.images_per_second, 2),
            "latency_p50_ms": round(self.p50_ms, 4),
            "latency_p99_ms": round(self.p99_ms, 4),
            "ms_per_image": round(self.ms_per_image, 4),
            "samples": len(self.latencies_ms),
            "rounds_images_per_second": [round(v, 2) for v in self.round_images_per_second],
        }


def time_predict(
    backend: Backend, batch: np.ndarray, *, iterations: int, warmup: int = 3, heatmaps: bool = True
) -> list[float]:
    """Seconds per ``predict`` call over ``iterations`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        backend.predict(batch, heatmaps=heatmaps)
    seconds = []
    for _ in range(iterations):
        start = time.perf_counter()
        backend.predict(batch, heatmaps=heatmaps)
        seconds.append(time.perf_counter() - start)
    return seconds


def synthetic_frame(width: int, height: int, channels: int, seed: int = 0, quality: int = 90) -> bytes:
    """A JPEG camera-like frame (gradient, texture, a few edges): realistic decode cost, unlike flat grey."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 110 + 60 * np.sin(xx / max(width, 1) * 6.0) * np.cos(yy / max(height, 1) * 4.0)
    image = base[:, :, None] + rng.normal(0, 12, (height, width, channels))
    image[height // 3 : height // 3 + max(height // 20, 1), width // 5 : 4 * width // 5] -= 60
    ok, encoded = cv2.imencode(
        ".jpg", image.clip(0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise RuntimeError("OpenCV could not encode the synthetic frame")
    return encoded.tobytes()


def time_preprocess(
    frame: bytes, *, image_size: int, channels: int, iterations: int, warmup: int = 5
) -> list[float]:
    """Seconds per frame to decode ``frame``, convert, resize to ``image_size`` and normalise it."""

    def once() -> np.ndarray:
        image = prepare_image(frame, "image/jpeg", image_size=image_size, channels=channels)
        return to_model_input(image[None])

    for _ in range(warmup):
        once()
    seconds = []
    for _ in range(iterations):
        start = time.perf_counter()
        once()
        seconds.append(time.perf_counter() - start)
    return seconds


def preprocessing_share(preprocess_ms: float, inference_ms_per_image: float) -> float:
    """Fraction of a frame's cost spent preparing it, when inference runs at the given per-image cost."""
    return preprocess_ms / (preprocess_ms + inference_ms_per_image)


def machine_summary() -> dict[str, object]:
    """CPU count, load and library versions, recorded next to every benchmark."""
    import platform

    import onnxruntime

    summary: dict[str, object] = {
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "opencv": cv2.__version__,
        "machine": platform.machine(),
    }
    try:
        import torch

        summary["torch"] = torch.__version__
    except ImportError:
        pass
    return summary
