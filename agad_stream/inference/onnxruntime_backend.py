"""The ONNX Runtime backend: the embedded default on CPUs, and a GPU path without TensorRT.

It runs ``model.onnx`` (written by ``agad export``; this package cannot export it because the
exporter lives in ``deploy``). Graph optimisations are all on: they fold BatchNorm into the
convolutions and fuse activations, which is where most of the gain over PyTorch eager comes from.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from agad_stream.errors import AgadError
from agad_stream.inference.base import (
    INPUT_NAME,
    INT8_ONNX_FILE,
    ONNX_FILE,
    OUTPUT_NAMES,
    Prediction,
    check_batch,
)
from agad_stream.model.card import load_card
from agad_stream.model.provenance import check_onnx_stamp

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


PRECISIONS = ("fp32", "int8")


def onnx_path(model_dir: Path, precision: str = "fp32") -> Path:
    """``model_dir/model.onnx`` (``model.int8.onnx`` for int8); AgadError with the export command when
    it is missing."""
    if precision not in PRECISIONS:
        raise AgadError(f"onnxruntime backend precision {precision!r}: use {' or '.join(PRECISIONS)}")
    name = INT8_ONNX_FILE if precision == "int8" else ONNX_FILE
    if not (model_dir / name).is_file():
        flag = " --precision int8" if precision == "int8" else ""
        raise AgadError(
            f"{model_dir} has no {name}; run `agad export --model {model_dir}{flag}` first "
            "(or use --backend torch)"
        )
    return model_dir / name


def session_options(threads: int | None) -> ort.SessionOptions:
    """The session options the scorer runs with: every graph optimisation, ``threads`` intra-op
    threads (None: ONNX Runtime's default), and idle threads that sleep instead of spinning, since
    the scorer's decode, Kafka and Redis threads need those cores between batches."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxRuntimeBackend:
    """``device`` "cpu" (default) or "cuda" (the CUDA execution provider, device ``device_id``).

    ``threads`` is the intra-op thread count (None: ONNX Runtime's default, one per physical core);
    ``precision`` "int8" runs the quantised graph (``agad export --precision int8``), for CPUs.
    ``lanes`` (CPU only) lets that many calls run at once, each on ``threads`` threads (None: the
    cores shared out among the lanes). Two one-thread lanes on two cores score large batches faster
    than one two-thread call, whose threads wait for each other at every operator and whenever
    another thread of the process takes a core; a lone small batch, though, runs on one thread.
    """

    name = "onnxruntime"

    def __init__(
        self,
        model_dir: Path,
        *,
        device: str = "cpu",
        threads: int | None = None,
        device_id: int = 0,
        precision: str = "fp32",
        lanes: int = 1,
    ) -> None:
        self.card = load_card(model_dir)
        path = onnx_path(model_dir, precision)
        if device not in ("cpu", "cuda"):
            raise AgadError(f"onnxruntime backend device {device!r}: use cpu or cuda")
        if lanes < 1 or (lanes > 1 and device != "cpu"):
            raise AgadError(f"lanes {lanes}: use 1, or more on the CPU (a GPU takes one batch at a time)")
        providers: list[str | tuple[str, dict[str, str]]] = [CPU]
        if device == "cuda":
            if CUDA not in ort.get_available_providers():
                have = ", ".join(ort.get_available_providers())
                raise AgadError(
                    f"ONNX Runtime here has no {CUDA} (providers: {have}); install onnxruntime-gpu "
                    "or use device cpu"
                )
            providers = [(CUDA, {"device_id": str(device_id)}), CPU]
        if threads is not None and threads < 1:
            raise AgadError(f"threads must be at least 1, got {threads}")
        if lanes > 1 and threads is None:
            threads = max(1, (os.cpu_count() or 1) // lanes)
        self.lanes = lanes
        options = session_options(threads)
        options.log_severity_level = 3  # errors only: the CPU fallback notes of the CUDA provider are noise
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own unrelated exception types
            raise AgadError(
                f"ONNX Runtime cannot load {path}: {exc}; re-export it with `agad export --model {model_dir}`"
            ) from None
        names = [i.name for i in self.session.get_inputs()], [o.name for o in self.session.get_outputs()]
        if names != ([INPUT_NAME], list(OUTPUT_NAMES)):
            raise AgadError(
                f"{path} has inputs/outputs {names}, expected [{INPUT_NAME}] and {list(OUTPUT_NAMES)}; "
                f"re-export it with `agad export --model {model_dir}`"
            )
        check_onnx_stamp(path, dict(self.session.get_modelmeta().custom_metadata_map), self.card)
        active = self.session.get_providers()
        if device == "cuda" and CUDA not in active:
            raise AgadError(f"ONNX Runtime could not start {CUDA} for {path}; check the CUDA/cuDNN install")
        self.details = {
            "device": device if device == "cpu" else f"cuda:{device_id}",
            "provider": active[0],
            "threads": str(threads) if threads is not None else "default",
            "precision": precision,
            "lanes": str(lanes),
        }

    def predict(self, batch: np.ndarray, *, heatmaps: bool = True) -> Prediction:
        batch = check_batch(batch, self.card)
        wanted = list(OUTPUT_NAMES) if heatmaps else [OUTPUT_NAMES[0]]
        outputs = self.session.run(wanted, {INPUT_NAME: batch})
        return np.asarray(outputs[0]), np.asarray(outputs[1]) if heatmaps else None
