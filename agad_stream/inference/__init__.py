"""Inference backends behind one interface, and ``load_backend`` to get the right one.

::

    backend = load_backend(Path("models/v7"))            # auto: TensorRT > ORT CUDA > ORT CPU
    scores, heatmaps = backend.predict(to_model_input(frames))

Backend modules are imported when a backend of their kind is loaded, so an ONNX Runtime host
never imports TensorRT (nor pays for torch's CUDA initialisation).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from agad_stream.errors import AgadError
from agad_stream.inference.base import BACKEND_KINDS, Backend, BackendKind, Prediction, check_batch
from agad_stream.inference.selection import Choice, Machine, choose_backend, survey

__all__ = [
    "BACKEND_KINDS",
    "Backend",
    "BackendKind",
    "Choice",
    "Machine",
    "Prediction",
    "check_batch",
    "choose_backend",
    "load_backend",
]

log = logging.getLogger(__name__)

OPTIONS: dict[str, set[str]] = {
    "onnxruntime": {"device", "threads", "device_id"},
    "torch": {"device", "half", "threads"},
    "tensorrt": {"engine", "device_id"},
}
"""The keyword options each backend's constructor takes."""


def load_backend(model_dir: Path, kind: str = "auto", **options: Any) -> Backend:
    """Load ``model_dir`` with backend ``kind``; ``options`` go to that backend's constructor.

    onnxruntime: ``device`` ("cpu" | "cuda"), ``threads``, ``device_id``; torch: ``device``,
    ``half``, ``threads``; tensorrt: ``engine``, ``device_id``. With ``auto`` the chosen backend
    gets the options it accepts (``threads`` reaches ONNX Runtime on a CPU, say).
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise AgadError(f"model directory {model_dir} does not exist")
    if kind == "auto":
        machine, skipped = survey(model_dir)
        for note in skipped:
            log.warning("%s", note)
        choice = choose_backend(machine)
        log.info("backend auto -> %s %s (%s)", choice.kind, choice.options, "; ".join(choice.reasons))
        wanted = {k: v for k, v in options.items() if k in OPTIONS[choice.kind]}
        kind, options = choice.kind, {**wanted, **choice.options}
    if kind not in OPTIONS:
        raise AgadError(f"unknown backend {kind!r}; choose one of {', '.join(BACKEND_KINDS)}")
    unknown = sorted(set(options) - OPTIONS[kind])
    if unknown:
        raise AgadError(
            f"backend {kind} has no option {', '.join(unknown)}; it takes {', '.join(sorted(OPTIONS[kind]))}"
        )
    if kind == "onnxruntime":
        from agad_stream.inference.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(model_dir, **options)
    if kind == "torch":
        from agad_stream.inference.torch_backend import TorchBackend

        return TorchBackend(model_dir, **options)
    from agad_stream.inference.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(model_dir, **options)
