"""The PyTorch backend: the reference every other backend is checked against.

On a CPU it runs the model exactly as trained (float32). On a GPU it runs the generator in half
precision with channels-last tensors (what tensor cores want); the scorer computes the score and
heat-map from a float32 reconstruction (see :class:`~agad_stream.model.score.AnomalyScorer`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from agad_stream.errors import AgadError
from agad_stream.inference.base import Prediction, check_batch
from agad_stream.model.artifact import load_scorer


class TorchBackend:
    """``device``: "auto" (default: CUDA when available), "cpu", "cuda" or "cuda:N"; ``half`` defaults to
    on for CUDA. Pass ``device="cpu"`` for the exact float32 reference.

    ``threads`` sets torch's intra-op thread count, which is process-wide in torch.
    """

    name = "torch"
    lanes = 1  # torch's intra-op pool is per process: concurrent calls would only share it

    def __init__(
        self,
        model_dir: Path,
        *,
        device: str = "auto",
        half: bool | None = None,
        threads: int | None = None,
    ) -> None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        target = torch.device(device)
        if target.type == "cuda" and not torch.cuda.is_available():
            raise AgadError(f"--device {device}: torch sees no CUDA GPU here; use --device cpu")
        if target.type not in ("cpu", "cuda"):
            raise AgadError(f"torch backend device {device!r}: use cpu, cuda, cuda:N or auto")
        self.half = target.type == "cuda" if half is None else half
        if self.half and target.type == "cpu":
            raise AgadError("half precision needs a CUDA device; drop half=True or use device cuda")
        if threads is not None:
            torch.set_num_threads(threads)
        scorer, self.card = load_scorer(model_dir, device=target)
        self.scorer = scorer
        self.generator = scorer.generator.to(memory_format=torch.channels_last)
        if self.half:
            self.generator.half()
        self.device = target
        self.details = {
            "device": str(target),
            "precision": "fp16 generator, fp32 score" if self.half else "fp32",
            "threads": str(torch.get_num_threads()),
        }

    def predict(self, batch: np.ndarray, *, heatmaps: bool = True) -> Prediction:
        batch = check_batch(batch, self.card)
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device, non_blocking=True)
            x = x.contiguous(memory_format=torch.channels_last)
            scores, maps = self.scorer(x)
            return scores.cpu().numpy(), np.ascontiguousarray(maps.cpu().numpy()) if heatmaps else None
