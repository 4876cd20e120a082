"""Inference backends behind one interface, and ``load_backend`` to get the right one.

::

    backend = load_backend(Path("models/v7"))            # auto: TensorRT > ORT CUDA > ORT CPU INT8 > ORT CPU
    scores, heatmaps = backend.predict(to_model_input(frames))

Backend modules are imported when a backend of their kind is loaded, so an ONNX Runtime host
never imports TensorRT (nor pays for torch's CUDA initialisation).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from agad_stream.errors import AgadError
from agad_stream.inference.base import BACKEND_KINDS, Backend, BackendKind, Prediction, check_batch
from agad_stream.inference.selection import CUDA_PROVIDER, Choice, Machine, choose_backend, survey

__all__ = [
    "BACKEND_KINDS",
    "Backend",
    "BackendKind",
    "Choice",
    "Machine",
    "Prediction",
    "backend_options",
    "check_batch",
    "choose_backend",
    "load_backend",
]

log = logging.getLogger(__name__)

OPTIONS: dict[str, set[str]] = {
    "onnxruntime": {"device", "threads", "device_id", "precision", "lanes"},
    "torch": {"device", "half", "threads"},
    "tensorrt": {"engine", "device_id"},
}
"""The keyword options each backend's constructor takes."""


def backend_options(
    kind: str,
    device: str | None = None,
    threads: int | None = None,
    precision: str | None = None,
    lanes: int | None = None,
) -> dict[str, Any]:
    """The options of backend ``kind`` for a ``--device`` (auto, cpu, cuda, cuda:N), ``--threads``,
    ``--precision`` (of ONNX Runtime's graph) and ``--lanes``; TensorRT takes none (its engine names
    the GPU and its precision), and auto passes the device choice to the survey."""
    options: dict[str, Any] = {}
    if threads is not None and kind in ("auto", "onnxruntime", "torch"):
        options["threads"] = threads
    if lanes is not None and kind in ("auto", "onnxruntime"):
        options["lanes"] = lanes
    if precision is not None and kind in ("auto", "onnxruntime"):
        options["precision"] = precision
    if device in (None, "auto") or kind in ("auto", "tensorrt"):
        return options
    assert device is not None
    if kind == "onnxruntime" and device.startswith("cuda:"):
        options.update(device="cuda", device_id=int(device.removeprefix("cuda:")))
    else:
        options["device"] = device
    return options


def load_backend(
    model_dir: Path, kind: str = "auto", *, machine: Machine | None = None, **options: Any
) -> Backend:
    """Load ``model_dir`` with backend ``kind``; ``options`` go to that backend's constructor.

    onnxruntime: ``device`` ("cpu" | "cuda"), ``threads``, ``device_id``, ``precision`` ("fp32" |
    "int8"), ``lanes``; torch: ``device``, ``half``, ``threads``; tensorrt: ``engine``, ``device_id``. With
    ``auto`` the chosen backend gets the options it accepts (``threads`` reaches ONNX Runtime on a
    CPU, say), and a backend that fails to start (an engine TensorRT cannot deserialize, a CUDA
    provider without its libraries, a stale INT8 graph) gives way to the next choice with a
    warning: ``auto`` never fails where ONNX Runtime on the CPU would work. ``machine`` replaces
    this machine's survey (for tests).
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise AgadError(f"model directory {model_dir} does not exist")
    if kind != "auto":
        return _load(model_dir, kind, options)
    if machine is None:
        machine, skipped = survey(model_dir)
        for note in skipped:
            log.warning("%s", note)
    if options.get("precision") == "fp32":
        machine = replace(machine, int8_graph=False)
    while True:
        choice = choose_backend(machine)
        log.info("backend auto -> %s %s (%s)", choice.kind, choice.options, "; ".join(choice.reasons))
        wanted = {k: v for k, v in options.items() if k in OPTIONS[choice.kind]}
        on_gpu = choice.kind != "onnxruntime" or choice.options.get("device") == "cuda"
        if on_gpu and options.get("lanes", 1) != 1:
            wanted.pop("lanes", None)
            log.warning("backend auto: lanes apply to the CPU; %s runs one batch at a time", choice.kind)
        try:
            return _load(model_dir, choice.kind, {**wanted, **choice.options})
        except AgadError as exc:
            if choice.kind == "tensorrt":
                machine = replace(machine, engines=())
            elif choice.options.get("device") == "cuda":
                machine = replace(machine, providers=[p for p in machine.providers if p != CUDA_PROVIDER])
            elif choice.options.get("precision") == "int8":
                machine = replace(machine, int8_graph=False)
            else:
                raise
            log.warning(
                "backend auto: %s %s failed (%s); trying the next choice", choice.kind, choice.options, exc
            )


def _load(model_dir: Path, kind: str, options: dict[str, Any]) -> Backend:
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
