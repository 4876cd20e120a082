"""Static INT8 quantisation of a model's scorer for ONNX Runtime on CPUs: ``model.int8.onnx``.

What is quantised is the generator, where nearly all the multiply-adds are: its convolutions,
their activations and the data movement between them, in QDQ form with per-channel weights, so
ONNX Runtime fuses them into QLinearConv. Activation ranges come from normal training images
through the serving preprocessing, the same calibration set as TensorRT's INT8. What stays in
float32, and why:

- the transposed convolutions: ONNX Runtime's CPU provider has no INT8 kernel for them, so the
  4/2/1 ones are rewritten first as ordinary convolutions (:mod:`deploy.phase_conv`); the decoder's
  first one, from the 1x1 code to 4x4, is left as it is (it costs almost nothing);
- the encoder's last convolution, which makes the code (its weights and its output; its input is
  the INT8 features before it): the memory scores measure distances between codes, and rounding
  the code to 256 levels would move every image against the memory;
- the score and heat-map head (residual, norms, top-k, memory distances): cheap, and exactly the
  part where a rounding shows up as a different score.
"""

from __future__ import annotations

import ast
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from agad_stream.errors import AgadError
from agad_stream.inference.base import INPUT_NAME
from deploy.calibration import calibration_batches

SCOPE_KEY = "pkg.torch.onnx.name_scopes"
"""Node metadata in which torch's exporter records the module path a node came from."""

QUANTISED_OPS = (
    "Conv",
    "LeakyRelu",
    "Relu",
    "Pad",
    "Slice",
    "Unsqueeze",
    "Concat",
    "Reshape",
    "Transpose",
)
CALIBRATION_BATCH = 16


class _Batches(CalibrationDataReader):
    """Feeds the calibration images to ONNX Runtime's calibrator, one preprocessed batch at a time."""

    def __init__(self, images: np.ndarray, batch_size: int) -> None:
        self._batches: Iterator[np.ndarray] = calibration_batches(images, batch_size)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def quantise(fp32: onnx.ModelProto, calibration_images: np.ndarray, code_weight: str) -> onnx.ModelProto:
    """The INT8 (QDQ) version of ``fp32``, calibrated on uint8 NHWC normal images.

    ``code_weight`` names the initializer of the convolution that makes the generator's code; it
    stays float32 (see the module docstring).
    """
    nodes = generator_nodes(fp32, exclude_weight=code_weight)
    if not nodes:
        raise AgadError("the exported graph has no generator nodes to quantise; re-export with this version")
    batch = min(CALIBRATION_BATCH, len(calibration_images))
    with tempfile.TemporaryDirectory(prefix="agad-int8-") as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save_model(fp32, source)
        quantize_static(
            str(source),
            str(target),
            _Batches(calibration_images, batch),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTISED_OPS),
            nodes_to_quantize=nodes,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            # 7-bit weights: x86 CPUs without VNNI multiply uint8 by int8 in 16-bit sums that
            # saturate with full 8-bit weights, and the graph must score alike on every host.
            reduce_range=True,
            calibrate_method=CalibrationMethod.MinMax,
        )
        return onnx.load(str(target))


def generator_nodes(model: onnx.ModelProto, *, exclude_weight: str) -> list[str]:
    """Names of the quantisable nodes that came from the generator, less the one using ``exclude_weight``."""
    names = []
    for node in model.graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == SCOPE_KEY), "[]")
        # e.g. "['', 'generator.encoder', 'generator.encoder.3', 'conv2d']": the module path, outermost first
        inside = [scope.split(".")[0] for scope in ast.literal_eval(scopes)]
        if node.op_type in QUANTISED_OPS and "generator" in inside and exclude_weight not in node.input:
            names.append(node.name)
    return names
