"""The one scorer interface every inference backend implements.

A backend takes a batch that :func:`agad_stream.preprocess.to_model_input` made (float32 NCHW in
[-1, 1], the model card's channels and size) and returns one anomaly score per image and, when
asked, the per-pixel heat-maps. Callers that only need verdicts pass ``heatmaps=False`` and the
backend skips copying (B, 1, H, W) floats back from the device.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import numpy as np

from agad_stream.model.card import ModelCard

BackendKind = Literal["auto", "onnxruntime", "tensorrt", "torch"]
BACKEND_KINDS: tuple[BackendKind, ...] = ("auto", "onnxruntime", "tensorrt", "torch")
ONNX_FILE = "model.onnx"
INT8_ONNX_FILE = "model.int8.onnx"
"""The INT8 graph (`agad export --precision int8`), beside the float32 one."""
INPUT_NAME = "images"
OUTPUT_NAMES = ("scores", "heatmaps")

Prediction = tuple[np.ndarray, np.ndarray | None]
"""(scores float32 (B,), heat-maps float32 (B, 1, H, W) or None)."""


@runtime_checkable
class Backend(Protocol):
    """A loaded model that scores preprocessed batches.

    ``name`` is the backend kind; ``details`` says how it runs (device, provider, precision,
    threads) for logs, metrics and benchmarks; ``card`` is the model card of what it serves;
    ``lanes`` is how many ``predict`` calls may run at once (the scorer keeps that many batches in
    flight): 1 unless the backend was built for more.
    """

    name: str
    card: ModelCard
    details: dict[str, str]
    lanes: int

    def predict(self, batch: np.ndarray, *, heatmaps: bool = True) -> Prediction: ...


def check_batch(batch: np.ndarray, card: ModelCard) -> np.ndarray:
    """``batch`` as a C-contiguous float32 array, or ValueError naming what does not fit the model."""
    size, channels = card.input.image_size, card.input.channels
    expected = f"float32 (N, {channels}, {size}, {size})"
    if not isinstance(batch, np.ndarray) or batch.ndim != 4 or batch.shape[1:] != (channels, size, size):
        shape = getattr(batch, "shape", type(batch).__name__)
        raise ValueError(
            f"model {card.model_version} takes {expected} from to_model_input, got shape {shape}"
        )
    if batch.dtype != np.float32:
        raise ValueError(f"model {card.model_version} takes {expected}, got dtype {batch.dtype}")
    return np.ascontiguousarray(batch)
