"""TensorRT engine files and their metadata: naming, compatibility, optimisation profiles.

A serialized engine only runs on the GPU model and TensorRT version it was built with, and a
mismatch shows up as a crash or garbage rather than an error. So every engine has a JSON sidecar
(:class:`EngineMetadata`) that the builder (``deploy.tensorrt_engine``) writes and the backend
checks *before* deserializing. Everything here is plain Python: it is tested without a GPU.

Files in a model directory, for a GPU with slug ``nvidia-h200-sm90``::

    nvidia-h200-sm90.engine        the serialized engine
    nvidia-h200-sm90.engine.json   its EngineMetadata
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from types import ModuleType
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from agad_stream.errors import AgadError
from agad_stream.inference.gpu import GpuInfo, gpu_slug

ENGINE_SUFFIX = ".engine"
METADATA_SUFFIX = ".engine.json"
INSTALL_HINT = (
    "install TensorRT from NVIDIA's index (pip install 'agad-stream[tensorrt]' "
    "--extra-index-url https://pypi.nvidia.com) on a machine with an NVIDIA GPU and driver"
)

Precision = Literal["fp32", "fp16", "int8"]
Profile = tuple[int, int, int]
"""An optimisation profile's batch range: (min, opt, max)."""


class EngineMetadata(BaseModel):
    """What an engine was built from and for; written next to it as ``<slug>.engine.json``."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    precision: Precision
    profiles: list[Profile] = Field(description="batch (min, opt, max) of each optimisation profile")
    image_size: int
    channels: int
    onnx_sha256: str
    model_version: str
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @field_validator("profiles")
    @classmethod
    def _profiles_valid(cls, profiles: list[Profile]) -> list[Profile]:
        if not profiles:
            raise ValueError("an engine needs at least one optimisation profile")
        for low, opt, high in profiles:
            if not 1 <= low <= opt <= high:
                raise ValueError(f"profile {(low, opt, high)} is not 1 <= min <= opt <= max")
        return profiles

    @model_validator(mode="after")
    def _profiles_disjoint(self) -> EngineMetadata:
        ranges = sorted((low, high) for low, _, high in self.profiles)
        for (_, high), (low, _) in pairwise(ranges):
            if low <= high:
                raise ValueError(f"optimisation profiles overlap: {self.profiles}")
        return self

    @property
    def gpu(self) -> GpuInfo:
        return GpuInfo(self.gpu_name, self.compute_capability)

    @property
    def batch_range(self) -> tuple[int, int]:
        return min(p[0] for p in self.profiles), max(p[2] for p in self.profiles)


@dataclass(frozen=True)
class EngineRecord:
    """An engine file and its metadata as found in a model directory."""

    path: Path
    metadata: EngineMetadata


def engine_path(model_dir: Path, gpu: GpuInfo) -> Path:
    return model_dir / f"{gpu_slug(gpu)}{ENGINE_SUFFIX}"


def metadata_path(engine: Path) -> Path:
    return engine.with_name(engine.name.removesuffix(ENGINE_SUFFIX) + METADATA_SUFFIX)


def write_metadata(engine: Path, metadata: EngineMetadata) -> Path:
    path = metadata_path(engine)
    path.write_text(metadata.model_dump_json(indent=2) + "\n")
    return path


def read_metadata(engine: Path) -> EngineMetadata:
    """The metadata of ``engine``; AgadError when it is missing or unreadable (rebuild the engine)."""
    path = metadata_path(engine)
    fix = f"rebuild it with `agad build-engine --model {engine.parent}`"
    if not path.is_file():
        raise AgadError(f"{engine} has no metadata file {path.name}; {fix}")
    try:
        return EngineMetadata.model_validate(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise AgadError(f"{path} is not valid engine metadata (not JSON: {exc}); {fix}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors()[:3]
        )
        raise AgadError(f"{path} is not valid engine metadata ({problems}); {fix}") from None


def find_engines(model_dir: Path) -> tuple[list[EngineRecord], list[str]]:
    """Every engine in ``model_dir`` with readable metadata, and one line per engine skipped."""
    records: list[EngineRecord] = []
    skipped: list[str] = []
    for engine in sorted(model_dir.glob(f"*{ENGINE_SUFFIX}")):
        try:
            records.append(EngineRecord(engine, read_metadata(engine)))
        except AgadError as exc:
            skipped.append(str(exc))
    return records, skipped


def incompatibility(
    metadata: EngineMetadata, gpu: GpuInfo | None, tensorrt_version: str | None
) -> str | None:
    """Why an engine cannot run here (None when it can): another GPU model, capability or TensorRT."""
    if gpu is None:
        return "no NVIDIA GPU is visible (TensorRT engines need one)"
    if metadata.compute_capability != gpu.compute_capability or metadata.gpu_name != gpu.name:
        return f"built for {metadata.gpu}, but this machine has {gpu}"
    if tensorrt_version is None:
        return f"TensorRT is not installed; {INSTALL_HINT}"
    if metadata.tensorrt_version != tensorrt_version:
        return (
            f"built with TensorRT {metadata.tensorrt_version}, but TensorRT {tensorrt_version} is installed; "
            "engines do not carry over between TensorRT versions"
        )
    return None


def check_compatible(record: EngineRecord, gpu: GpuInfo | None, tensorrt_version: str | None) -> None:
    """Raise AgadError naming the engine, the mismatch and the fix if ``record`` cannot run here."""
    problem = incompatibility(record.metadata, gpu, tensorrt_version)
    if problem is not None:
        raise AgadError(
            f"cannot load TensorRT engine {record.path}: {problem}; "
            f"rebuild it here with `agad build-engine --model {record.path.parent}`"
        )


def profile_ranges(batch_sizes: Sequence[int]) -> list[Profile]:
    """One optimisation profile per batch size the scorer uses, together covering 1..max.

    ``[1, 8, 32]`` gives ``[(1, 1, 1), (2, 8, 8), (9, 32, 32)]``: each size gets kernels tuned for
    exactly it (opt), and any batch in between runs on the next larger profile.
    """
    sizes = sorted(set(batch_sizes))
    if not sizes or sizes[0] < 1:
        raise AgadError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    profiles: list[Profile] = []
    low = 1
    for size in sizes:
        profiles.append((low, size, size))
        low = size + 1
    return profiles


def select_profile(profiles: Sequence[Profile], batch: int) -> int:
    """Index of the profile whose batch range covers ``batch``; the smallest such range wins."""
    covering = [(high - low, i) for i, (low, _, high) in enumerate(profiles) if low <= batch <= high]
    if not covering:
        ranges = ", ".join(f"{low}..{high}" for low, _, high in profiles)
        raise ValueError(f"no optimisation profile covers batch {batch} (profiles: {ranges})")
    return min(covering)[1]


def plan_chunks(batch: int, profiles: Sequence[Profile]) -> list[tuple[int, int, int]]:
    """Split a batch into (start, stop, profile) pieces no larger than the engine's largest profile."""
    if batch < 1:
        return []
    largest = max(high for _, _, high in profiles)
    chunks = []
    for start in range(0, batch, largest):
        stop = min(start + largest, batch)
        chunks.append((start, stop, select_profile(profiles, stop - start)))
    return chunks


def tensorrt_available() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, imported on first use; AgadError saying how to install it."""
    try:
        return importlib.import_module("tensorrt")
    except ImportError as exc:
        raise AgadError(f"TensorRT is not available ({exc}); {INSTALL_HINT}") from None


def installed_tensorrt_version() -> str | None:
    """The installed TensorRT version, or None. Imports tensorrt: call only when an engine matters."""
    if not tensorrt_available():
        return None
    try:
        return str(import_tensorrt().__version__)
    except AgadError:
        return None
