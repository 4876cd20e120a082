"""The TensorRT backend: the production path on NVIDIA GPUs.

It loads ``<gpu-slug>.engine`` built by ``agad build-engine`` and refuses, before deserializing,
an engine whose metadata names another GPU model or TensorRT version (a mismatched engine fails
obscurely or silently). ``tensorrt`` is imported only here, on first use. Device buffers and the
CUDA stream come from torch, which the package depends on anyway; that spares a second CUDA
binding (pycuda or cuda-python) just for a few allocations.

Each optimisation profile gets its own execution context, created when a batch first needs it; a
batch larger than the engine's largest profile runs in pieces (see ``plan_chunks``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agad_stream.errors import AgadError
from agad_stream.inference.base import INPUT_NAME, OUTPUT_NAMES, Prediction, check_batch
from agad_stream.inference.engine import (
    INSTALL_HINT,
    EngineRecord,
    check_compatible,
    engine_path,
    import_tensorrt,
    plan_chunks,
    read_metadata,
)
from agad_stream.inference.gpu import GpuInfo, detect_gpu
from agad_stream.model.card import load_card
from agad_stream.model.provenance import engine_staleness


def engine_for_this_gpu(model_dir: Path, gpu: GpuInfo | None) -> EngineRecord:
    """The engine of ``model_dir`` built for ``gpu``, or AgadError saying how to build one."""
    if gpu is None:
        raise AgadError(f"the tensorrt backend needs an NVIDIA GPU, and none is visible; {INSTALL_HINT}")
    path = engine_path(model_dir, gpu)
    if not path.is_file():
        raise AgadError(
            f"{model_dir} has no TensorRT engine for {gpu} ({path.name}); "
            f"build it on this machine with `agad build-engine --model {model_dir}`"
        )
    return EngineRecord(path, read_metadata(path))


class TensorRTBackend:
    """Run ``engine`` (default: the one for this GPU in ``model_dir``) on CUDA device ``device_id``."""

    name = "tensorrt"
    lanes = 1  # one execution context, one stream: calls take turns

    def __init__(self, model_dir: Path, *, engine: Path | None = None, device_id: int = 0) -> None:
        self.card = load_card(model_dir)
        trt = import_tensorrt()
        import torch  # after tensorrt: without it there is nothing to allocate for

        if not torch.cuda.is_available():
            raise AgadError(f"the tensorrt backend needs an NVIDIA GPU, and torch sees none; {INSTALL_HINT}")
        gpu = detect_gpu()
        record = (
            EngineRecord(engine, read_metadata(engine)) if engine else engine_for_this_gpu(model_dir, gpu)
        )
        check_compatible(record, gpu, str(trt.__version__))
        meta = record.metadata
        stale = engine_staleness(record.path, meta.model_version, meta.onnx_sha256, self.card, model_dir)
        if stale:
            raise AgadError(
                f"{record.path} is stale: {stale}; rebuild it with `agad build-engine --model {model_dir}`"
            )
        if (meta.image_size, meta.channels) != (self.card.input.image_size, self.card.input.channels):
            raise AgadError(
                f"{record.path} was built for {meta.channels}x{meta.image_size}px input, but the model card "
                f"says {self.card.input.channels}x{self.card.input.image_size}px; rebuild it"
            )
        self._trt = trt
        self._torch = torch
        self._device = torch.device("cuda", device_id)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(record.path.read_bytes())
        if self._engine is None:
            raise AgadError(
                f"TensorRT could not deserialize {record.path}; "
                f"rebuild it with `agad build-engine --model {model_dir}`"
            )
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        if sorted(names) != sorted([INPUT_NAME, *OUTPUT_NAMES]):
            raise AgadError(f"{record.path} has tensors {names}; re-export and rebuild the engine")
        self._stream = torch.cuda.Stream(self._device)
        self._contexts: dict[int, Any] = {}
        self.record = record
        self.details = {
            "device": f"cuda:{device_id}",
            "gpu": str(gpu),
            "precision": meta.precision,
            "engine": record.path.name,
            "tensorrt": str(trt.__version__),
            "batch_range": "{}..{}".format(*meta.batch_range),
        }

    def _context(self, profile: int) -> Any:
        context = self._contexts.get(profile)
        if context is None:
            context = self._engine.create_execution_context()
            if context is None:
                raise AgadError(f"TensorRT could not create an execution context for {self.record.path}")
            context.set_optimization_profile_async(profile, self._stream.cuda_stream)
            self._contexts[profile] = context
        return context

    def predict(self, batch: np.ndarray, *, heatmaps: bool = True) -> Prediction:
        batch = check_batch(batch, self.card)
        pieces = [
            self._run(batch[start:stop], profile, heatmaps)
            for start, stop, profile in plan_chunks(len(batch), self.record.metadata.profiles)
        ]
        if not pieces:
            size = self.card.input.image_size
            return np.zeros(0, np.float32), np.zeros((0, 1, size, size), np.float32) if heatmaps else None
        scores = np.concatenate([p[0] for p in pieces])
        maps = np.concatenate([p[1] for p in pieces if p[1] is not None]) if heatmaps else None
        return scores, maps

    def _run(self, chunk: np.ndarray, profile: int, heatmaps: bool) -> Prediction:
        torch = self._torch
        n, size = len(chunk), self.card.input.image_size
        with torch.cuda.stream(self._stream):
            images = torch.from_numpy(chunk).to(self._device, non_blocking=True)
            scores = torch.empty(n, dtype=torch.float32, device=self._device)
            maps = torch.empty((n, 1, size, size), dtype=torch.float32, device=self._device)
            context = self._context(profile)
            context.set_input_shape(INPUT_NAME, tuple(chunk.shape))
            for name, tensor in ((INPUT_NAME, images), ("scores", scores), ("heatmaps", maps)):
                context.set_tensor_address(name, tensor.data_ptr())
            if not context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError(f"TensorRT failed to run {self.record.path} on a batch of {n}")
            # .cpu() copies on this stream and waits for it, so the engine has finished.
            return scores.cpu().numpy(), maps.cpu().numpy() if heatmaps else None
