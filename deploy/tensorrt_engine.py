"""Build a TensorRT engine from a model directory's ``model.onnx``, for the GPU of this machine.

The engine gets one optimisation profile per batch size the scorer uses
(:func:`~agad_stream.inference.engine.profile_ranges`), FP16 or INT8 arithmetic for the generator,
and FP32 for the score: the layers after the generator's final tanh (residual, squares, sums,
top-k) keep float32, because the L2 score of a 256 px colour frame sums ~200k squares, beyond
float16's range. INT8 is calibrated with TensorRT's entropy calibrator on normal training images
(:mod:`deploy.calibration`); TensorRT 10.1 deprecated this implicit quantization in favour of Q/DQ
nodes in the ONNX graph, but it still works in 10.x and needs no extra tooling. A timing cache,
kept per GPU model and TensorRT version outside the model directory, makes rebuilds after
retraining much faster.

Output: ``<gpu-slug>.engine`` and ``<gpu-slug>.engine.json`` (:class:`EngineMetadata`) in the model
directory. ``tensorrt`` and torch (for CUDA buffers during calibration) are imported on first use.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from agad_stream.errors import AgadError
from agad_stream.inference.base import INPUT_NAME
from agad_stream.inference.engine import (
    INSTALL_HINT,
    EngineMetadata,
    EngineRecord,
    Precision,
    engine_path,
    import_tensorrt,
    profile_ranges,
    write_metadata,
)
from agad_stream.inference.gpu import GpuInfo, detect_gpu, gpu_slug
from agad_stream.inference.onnxruntime_backend import onnx_path
from agad_stream.model.card import load_card
from agad_stream.model.provenance import file_sha256
from deploy.calibration import calibration_batch_size, calibration_batches

log = logging.getLogger(__name__)

PRECISIONS: tuple[Precision, ...] = ("fp16", "int8", "fp32")


@dataclass(frozen=True)
class BuildOptions:
    """How to build: precision, the scorer's batch sizes, and INT8 calibration images (uint8 NHWC normals)."""

    precision: Precision = "fp16"
    batch_sizes: Sequence[int] = (1, 8, 32)
    timing_cache: Path | None = None
    calibration_images: np.ndarray | None = None
    calibration_batch: int = 32
    workspace_gib: float | None = None


def require_tensorrt_and_gpu() -> tuple[ModuleType, GpuInfo]:
    """tensorrt and this machine's GPU, or AgadError saying what is missing and what to install."""
    trt = import_tensorrt()
    import torch  # CUDA buffers for calibration; also the most reliable GPU probe

    gpu = detect_gpu() if torch.cuda.is_available() else None
    if gpu is None:
        raise AgadError(
            f"building a TensorRT engine needs an NVIDIA GPU, and none is visible; {INSTALL_HINT}"
        )
    return trt, gpu


def default_timing_cache(gpu: GpuInfo, tensorrt_version: str) -> Path:
    """``<cache>/tensorrt/<gpu>-trt<version>.timing-cache``; cache is ``$AGAD_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/agad-stream`` or ``~/.cache/agad-stream`` (as the trainer's data cache)."""
    root = os.environ.get("AGAD_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "agad-stream"
    )
    return Path(root) / "tensorrt" / f"{gpu_slug(gpu)}-trt{tensorrt_version}.timing-cache"


def build_engine(model_dir: Path, options: BuildOptions) -> EngineRecord:
    """Build and save the engine of ``model_dir`` for this GPU; returns its path and metadata."""
    trt, gpu = require_tensorrt_and_gpu()
    if options.precision not in PRECISIONS:
        raise AgadError(f"precision {options.precision!r}: choose one of {', '.join(PRECISIONS)}")
    if options.precision == "int8" and options.calibration_images is None:
        raise AgadError("INT8 needs calibration images (normal images of the model's training data)")
    card = load_card(model_dir)
    source = onnx_path(model_dir)
    size, channels = card.input.image_size, card.input.channels
    profiles = profile_ranges(options.batch_sizes)
    version = str(trt.__version__)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise AgadError(f"TensorRT cannot parse {source}: {errors}; re-export it with `agad export`")
    config = builder.create_builder_config()
    if options.workspace_gib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_gib * 2**30))
    for low, opt, high in profiles:
        profile = builder.create_optimization_profile()
        profile.set_shape(
            INPUT_NAME, (low, channels, size, size), (opt, channels, size, size), (high, channels, size, size)
        )
        config.add_optimization_profile(profile)

    if options.precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)  # exact float32, for parity checks
    else:
        config.set_flag(trt.BuilderFlag.FP16)
        kept = keep_score_in_fp32(trt, network)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        log.info("score layers kept in fp32: %d", kept)
    calibrator = None
    if options.precision == "int8":
        assert options.calibration_images is not None
        images = options.calibration_images
        batch = calibration_batch_size(len(images), options.calibration_batch)
        config.set_flag(trt.BuilderFlag.INT8)
        shape = (batch, channels, size, size)
        calibration_profile = builder.create_optimization_profile()
        calibration_profile.set_shape(INPUT_NAME, shape, shape, shape)
        config.set_calibration_profile(calibration_profile)
        cache = model_dir / f"int8-calibration-{file_sha256(source)[:12]}.cache"
        # Held in a local until the build ends: the config does not keep the Python object alive.
        calibrator = make_calibrator(trt, calibration_batches(images, batch), batch, cache)
        config.int8_calibrator = calibrator
        log.info("INT8 calibration: %d images in batches of %d (cache %s)", len(images), batch, cache)

    timing_cache = options.timing_cache or default_timing_cache(gpu, version)
    blob = timing_cache.read_bytes() if timing_cache.is_file() else b""
    if not config.set_timing_cache(config.create_timing_cache(blob), ignore_mismatch=False):
        log.warning("timing cache %s does not fit this GPU/TensorRT; starting a new one", timing_cache)
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)

    log.info("building %s engine for %s from %s (profiles %s)", options.precision, gpu, source, profiles)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise AgadError(f"TensorRT failed to build an engine from {source}; see its messages above")
    timing_cache.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))

    target = engine_path(model_dir, gpu)
    _write_atomically(target, bytes(memoryview(serialized)))
    metadata = EngineMetadata(
        tensorrt_version=version,
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        precision=options.precision,
        profiles=profiles,
        image_size=size,
        channels=channels,
        onnx_sha256=file_sha256(source),
        model_version=card.model_version,
    )
    write_metadata(target, metadata)
    del calibrator
    return EngineRecord(target, metadata)


def keep_score_in_fp32(trt: ModuleType, network: Any) -> int:
    """Pin every float layer after the generator's last tanh to float32; returns how many were pinned."""
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    last_tanh = None
    for index, layer in enumerate(layers):
        if layer.type == trt.LayerType.ACTIVATION:
            layer.__class__ = trt.IActivationLayer  # the Python API's documented downcast
            if layer.type == trt.ActivationType.TANH:
                last_tanh = index
    if last_tanh is None:  # not one of our generators: protect the reductions at least
        candidates = [layer for layer in layers if layer.type in (trt.LayerType.REDUCE, trt.LayerType.TOPK)]
    else:
        candidates = layers[last_tanh + 1 :]
    floats = (trt.float32, trt.float16)
    pinned = 0
    for layer in candidates:
        if layer.type in (trt.LayerType.CONSTANT, trt.LayerType.SHAPE):
            continue
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if not any(out.dtype in floats for out in outputs):
            continue
        layer.precision = trt.float32
        for j, out in enumerate(outputs):
            if out.dtype in floats:
                layer.set_output_type(j, trt.float32)
        pinned += 1
    return pinned


def make_calibrator(trt: ModuleType, batches: Iterator[np.ndarray], batch_size: int, cache: Path) -> Any:
    """An IInt8EntropyCalibrator2 that feeds ``batches`` through a CUDA buffer and caches its table."""
    import torch

    base: Any = trt.IInt8EntropyCalibrator2

    class EntropyCalibrator(base):
        def __init__(self) -> None:
            base.__init__(self)
            self.buffer: torch.Tensor | None = None
            self.fed = 0

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: list[str], *args: Any) -> list[int] | None:
            batch = next(batches, None)
            if batch is None:
                return None
            self.buffer = torch.from_numpy(batch).cuda()
            self.fed += len(batch)
            return [int(self.buffer.data_ptr())]

        def read_calibration_cache(self, *args: Any) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data: Any, *args: Any) -> None:
            _write_atomically(cache, bytes(memoryview(data)))

    return EntropyCalibrator()


def _write_atomically(target: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
