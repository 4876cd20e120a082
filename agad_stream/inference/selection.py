"""``auto``: which backend to use, as a pure function of what this machine offers.

Preference: a TensorRT engine built for this GPU and TensorRT version, else ONNX Runtime on the
GPU (its CUDA provider), else ONNX Runtime on the CPU: its INT8 graph where ``agad export
--precision int8`` wrote one (someone chose it and saw its parity), else float32. PyTorch is
never chosen automatically: it is the reference, the slowest of the three. :func:`survey` gathers
the facts, :func:`choose_backend` decides; keeping the two apart lets tests feed any machine to
the decision without a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agad_stream.inference.base import INT8_ONNX_FILE
from agad_stream.inference.engine import (
    EngineRecord,
    find_engines,
    incompatibility,
    installed_tensorrt_version,
)
from agad_stream.inference.gpu import GpuInfo, detect_gpu
from agad_stream.model.card import load_card
from agad_stream.model.provenance import engine_staleness

CUDA_PROVIDER = "CUDAExecutionProvider"


@dataclass(frozen=True)
class Machine:
    """What the choice depends on: ONNX Runtime's providers, the GPU, TensorRT and the engines at hand."""

    providers: Sequence[str]
    gpu: GpuInfo | None
    tensorrt_version: str | None
    engines: Sequence[EngineRecord] = ()
    int8_graph: bool = False  # the model directory holds model.int8.onnx


@dataclass(frozen=True)
class Choice:
    """A backend kind with the options to load it, and why it was chosen (for the log)."""

    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()


def choose_backend(machine: Machine) -> Choice:
    """The fastest backend this machine can run, with one reason line per alternative passed over."""
    reasons: list[str] = []
    for record in machine.engines:
        problem = incompatibility(record.metadata, machine.gpu, machine.tensorrt_version)
        if problem is None:
            return Choice("tensorrt", {"engine": record.path}, (*reasons, f"engine {record.path.name} fits"))
        reasons.append(f"engine {record.path.name} skipped: {problem}")
    if not machine.engines:
        reasons.append("no TensorRT engine in the model directory")
    if machine.gpu is not None and CUDA_PROVIDER in machine.providers:
        return Choice("onnxruntime", {"device": "cuda"}, (*reasons, f"ONNX Runtime CUDA on {machine.gpu}"))
    if machine.gpu is None:
        reasons.append("no NVIDIA GPU visible")
    else:
        reasons.append(f"ONNX Runtime has no {CUDA_PROVIDER}")
    if machine.int8_graph:
        return Choice(
            "onnxruntime",
            {"device": "cpu", "precision": "int8"},
            (*reasons, f"ONNX Runtime INT8 on the CPU ({INT8_ONNX_FILE})"),
        )
    return Choice("onnxruntime", {"device": "cpu"}, (*reasons, "ONNX Runtime on the CPU"))


def survey(model_dir: Path) -> tuple[Machine, list[str]]:
    """This machine's facts for :func:`choose_backend`, and notes on engine files that were unreadable.

    TensorRT is imported only when the model directory holds an engine for the GPU found here.
    """
    import onnxruntime as ort

    gpu = detect_gpu()
    engines, skipped = find_engines(model_dir)
    card = load_card(model_dir)
    fresh = []
    for record in engines:
        meta = record.metadata
        stale = engine_staleness(record.path, meta.model_version, meta.onnx_sha256, card, model_dir)
        if stale:
            skipped.append(f"engine {record.path.name} skipped: {stale}; rebuild it with `agad build-engine`")
        else:
            fresh.append(record)
    engines = fresh
    wanted = [r for r in engines if gpu is not None and r.metadata.gpu == gpu]
    version = installed_tensorrt_version() if wanted else None
    # Engines for other GPUs are kept in the list so the log says why they were passed over.
    int8_graph = (model_dir / INT8_ONNX_FILE).is_file()
    return Machine(tuple(ort.get_available_providers()), gpu, version, tuple(engines), int8_graph), skipped
