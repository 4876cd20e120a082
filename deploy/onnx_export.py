"""Export a model directory's scorer (generator + score + heat-map) to ``model.onnx``.

One graph, one file: ``images`` float32 (batch, C, S, S) in, ``scores`` (batch,) and ``heatmaps``
(batch, 1, S, S) out, batch dynamic, weights inside.

Exporter: torch's ``dynamo=True`` path (torch.export + onnxscript). It is the exporter torch
develops and defaults to; the TorchScript one is deprecated, slated for removal, and cannot
trace the ``topk`` score (its k comes from the image size, which tracing turns into a tensor).
The dynamo exporter handles all three generators and all three scores, and its optimiser folds
BatchNorm into the convolutions. Its lowest native opset is 18; asking it for 17 makes it try a
version conversion that fails on ReduceMean and silently keeps 18, so opsets below 18 are
refused here rather than written under a false label. TensorRT 10 and ONNX Runtime read 18.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import torch

from agad_stream.errors import AgadError
from agad_stream.inference.base import INPUT_NAME, INT8_ONNX_FILE, ONNX_FILE, OUTPUT_NAMES
from agad_stream.model.artifact import ModelCard, load_scorer
from agad_stream.model.provenance import PRECISION_KEY, SOURCE_KEY, VERSION_KEY, source_digest
from agad_stream.model.score import AnomalyScorer
from deploy.onnx_quantize import quantise
from deploy.phase_conv import rewrite_transposed_convolutions

DEFAULT_OPSET = 18
MIN_OPSET = 18
MAX_BATCH = 4096
"""Upper bound of the dynamic batch axis recorded by torch.export (any larger batch is unusual)."""


def export_onnx(
    model_dir: Path,
    *,
    opset: int = DEFAULT_OPSET,
    out: Path | None = None,
    calibration_images: np.ndarray | None = None,
    rewrite_decoder: bool = False,
) -> Path:
    """Write ``model_dir/model.onnx`` (or ``out``), checked by the ONNX checker; returns its path.

    With ``calibration_images`` (uint8 NHWC normals) it writes the INT8 graph, ``model.int8.onnx``,
    instead (:mod:`deploy.onnx_quantize`), its decoder rewritten as plain convolutions
    (:mod:`deploy.phase_conv`); ``rewrite_decoder`` does that for a float32 graph too.
    """
    if opset < MIN_OPSET:
        raise AgadError(
            f"--opset {opset}: the exporter writes opset {MIN_OPSET} or newer (opset {opset} cannot express "
            f"the graph's ReduceMean with axes as an input); use --opset {MIN_OPSET}"
        )
    scorer, card = load_scorer(model_dir)
    int8 = calibration_images is not None
    if int8 or rewrite_decoder:
        rewrite_transposed_convolutions(scorer)
    model = _trace(scorer, card, opset, model_dir)
    if calibration_images is not None:
        model = quantise(model, calibration_images, code_weight=_code_weight(scorer))
    _stamp(model, card, opset, source_digest(model_dir, card), "int8" if int8 else "fp32")
    target = out or model_dir / (INT8_ONNX_FILE if int8 else ONNX_FILE)
    _write_atomically(model, target)
    check_onnx(target, card)
    return target


def _trace(scorer: AnomalyScorer, card: ModelCard, opset: int, model_dir: Path) -> onnx.ModelProto:
    """The scorer as an ONNX graph (dynamo exporter, optimised: BatchNorm folded into the convolutions)."""
    size, channels = card.input.image_size, card.input.channels
    # Batch 2, not 1: torch.export specialises a dimension whose example value is 1.
    example = torch.zeros(2, channels, size, size)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with _quiet_exporter():
        try:
            program = torch.onnx.export(
                scorer,
                (example,),
                None,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_shapes=({0: batch},),
                opset_version=opset,
                dynamo=True,
                optimize=True,
                verbose=False,
            )
        except Exception as exc:  # the exporter raises many unrelated types; all mean "cannot export"
            raise AgadError(f"cannot export {model_dir} to ONNX at opset {opset}: {exc}") from exc
    assert program is not None
    return program.model_proto


def _code_weight(scorer: AnomalyScorer) -> str:
    """Initializer name of the convolution that makes the generator's code (the encoder's last)."""
    encoder = getattr(scorer.generator, "encoder", None)
    if not isinstance(encoder, torch.nn.Sequential):
        return ""  # the U-Nets have no code: nothing to keep in float32 for a memory score
    return f"generator.encoder.{len(encoder) - 1}.weight"


def check_onnx(path: Path, card: ModelCard) -> onnx.ModelProto:
    """ONNX checker (full, with shape inference) plus this project's contract; AgadError on a violation."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise AgadError(f"{path} fails the ONNX checker: {exc}") from None
    model = onnx.load(str(path))
    inputs = [(i.name, _dims(i)) for i in model.graph.input]
    outputs = [(o.name, _dims(o)) for o in model.graph.output]
    size, channels = card.input.image_size, card.input.channels
    expected_in = [(INPUT_NAME, ["batch", channels, size, size])]
    expected_out = [(OUTPUT_NAMES[0], ["batch"]), (OUTPUT_NAMES[1], ["batch", 1, size, size])]
    if inputs != expected_in or outputs != expected_out:
        raise AgadError(
            f"{path} has inputs {inputs} and outputs {outputs}, expected {expected_in} and {expected_out}"
        )
    if model.graph.initializer and any(
        t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer
    ):
        raise AgadError(f"{path} keeps weights in external files; it must be one self-contained file")
    return model


def _dims(value: onnx.ValueInfoProto) -> list[str | int]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def _stamp(model: onnx.ModelProto, card: ModelCard, opset: int, source: str | None, precision: str) -> None:
    """Record which model version, weights and preprocessing the graph belongs to: the backends
    refuse a graph whose version or source digest is not its directory's (agad_stream.model.provenance)."""
    props = {
        VERSION_KEY: card.model_version,
        SOURCE_KEY: source or "",
        "agad.generator": card.generator,
        "agad.score": card.score.method,
        "agad.input": f"{card.input.channels}x{card.input.image_size}x{card.input.image_size} "
        f"{card.input.colour}, {card.input.normalisation}",
        "agad.exporter": f"torch.onnx dynamo, torch {torch.__version__}, opset {opset}",
        PRECISION_KEY: precision,
    }
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "agad-stream"


def _write_atomically(model: onnx.ModelProto, target: Path) -> None:
    """Write through a temporary file so a scorer never loads a half-written model.onnx."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".model-", suffix=".onnx.tmp")
    os.close(fd)
    try:
        onnx.save_model(model, tmp, save_as_external_data=False)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's progress chatter and its warnings about torchvision ops we never use."""
    loggers = [
        logging.getLogger(name)
        for name in ("torch.onnx", "torch.export", "torch._export", "onnxscript", "onnx_ir")
    ]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
