"""``agad export`` and ``agad build-engine``: from a model directory to what the scorers load."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from agad_stream.cli import args as types
from agad_stream.datasets import dataset_images
from agad_stream.errors import AgadError
from agad_stream.inference import load_backend
from agad_stream.inference.base import ONNX_FILE
from agad_stream.model.card import load_card
from agad_stream.preprocess import to_model_input
from deploy.parity import Parity, compare, random_batch

log = logging.getLogger(__name__)


def register_export(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a model directory to ONNX (model.onnx, or model.int8.onnx) and check it",
        description="Write MODEL/model.onnx: generator, score and heat-map in one graph with a dynamic batch "
        "axis, weights inside, checked with the ONNX checker, then compare ONNX Runtime with PyTorch on a "
        "random batch. With --precision int8 also write MODEL/model.int8.onnx, the generator quantised to "
        "INT8 for CPUs and calibrated on normal images of the model's training data, compared with the "
        "float32 graph on normal images; the scorer's auto backend then uses it on a CPU.",
    )
    parser.add_argument(
        "--precision",
        choices=["fp32", "int8"],
        default="fp32",
        help="fp32 (default), or int8 for ONNX Runtime on CPUs (see docs/PERFORMANCE.md for its speed "
        "and AUROC against fp32)",
    )
    parser.add_argument("--model", required=True, type=types.model_dir, help="model directory")
    parser.add_argument(
        "--opset", type=types.integer(18, 23), default=18, help="ONNX opset, 18 or newer (default 18)"
    )
    parser.add_argument("--out", type=Path, help=f"write here instead of MODEL/{ONNX_FILE}")
    parser.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    _add_calibration_flags(parser, default_images=256)
    types.add_json_flag(parser)
    parser.set_defaults(func=run_export)


def _add_calibration_flags(parser: argparse.ArgumentParser, default_images: int) -> None:
    parser.add_argument(
        "--calibration-data",
        help="INT8: data set spec of the normal images (default: the model's training data)",
    )
    parser.add_argument(
        "--calibration-images",
        type=types.positive,
        default=default_images,
        help=f"INT8: images to use (default {default_images})",
    )


def register_build_engine(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "build-engine",
        help="build a TensorRT engine for this machine's GPU (needs TensorRT and an NVIDIA GPU)",
        description="Build MODEL/<gpu>.engine and its .engine.json metadata from MODEL/model.onnx (exported "
        "first if missing), with one optimisation profile per --batch size. INT8 is calibrated on normal "
        "images of the model's training data. Needs `pip install 'agad-stream[tensorrt]' "
        "--extra-index-url https://pypi.nvidia.com` and an NVIDIA GPU.",
    )
    parser.add_argument("--model", required=True, type=types.model_dir, help="model directory")
    parser.add_argument("--precision", choices=["fp16", "int8", "fp32"], default="fp16", help="default fp16")
    parser.add_argument(
        "--batch",
        type=types.batch_sizes,
        default=[1, 8, 32],
        help="batch sizes the scorer uses (default 1,8,32)",
    )
    parser.add_argument(
        "--timing-cache", type=Path, help="timing cache file (default: per GPU in the cache dir)"
    )
    _add_calibration_flags(parser, default_images=512)
    parser.add_argument(
        "--calibration-batch", type=types.positive, default=32, help="INT8: calibration batch (default 32)"
    )
    parser.add_argument(
        "--workspace-gib",
        type=types.number(0, low_open=True),
        help="builder workspace limit in GiB (default: TensorRT's)",
    )
    parser.add_argument(
        "--no-verify", action="store_true", help="skip the engine vs ONNX Runtime (CPU) check"
    )
    types.add_json_flag(parser)
    parser.set_defaults(func=run_build_engine)


def run_export(args: argparse.Namespace) -> int:
    from agad_stream.model.provenance import file_sha256
    from deploy.onnx_export import export_onnx

    int8 = args.precision == "int8"
    if int8 and args.out is not None:
        raise AgadError("--out writes the float32 graph only; an INT8 graph is always MODEL/model.int8.onnx")
    calibration = _calibration_images(args) if int8 else None
    if int8 and not (args.model / ONNX_FILE).is_file():
        log.info(
            "%s has no %s: exporting it first (the INT8 graph is checked against it)", args.model, ONNX_FILE
        )
        export_onnx(args.model, opset=args.opset)
    path = export_onnx(args.model, opset=args.opset, out=args.out, calibration_images=calibration)
    report: dict[str, Any] = {"onnx": str(path), "opset": args.opset, "bytes": path.stat().st_size}
    report["precision"] = args.precision
    report["sha256"] = file_sha256(path)
    if int8 and not args.no_verify:
        assert calibration is not None
        cpu = {"device": "cpu"}
        batch = to_model_input(calibration[:: max(1, len(calibration) // 8)][:8])
        parity = _check(
            args.model, "onnxruntime", cpu, "onnxruntime", {**cpu, "precision": "int8"}, "int8", batch
        )
        report["parity"] = _parity_dict(parity)
    elif not args.no_verify and args.out is None:
        parity = _check(args.model, "torch", {"device": "cpu"}, "onnxruntime", {"device": "cpu"}, "fp32")
        report["parity"] = _parity_dict(parity)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"wrote {path} ({args.precision}, opset {args.opset}, {report['bytes'] / 1e6:.1f} MB, "
            f"sha256 {report['sha256'][:12]})"
        )
        if "parity" in report:
            print(f"  {report['parity']['summary']}")
    return 0


def run_build_engine(args: argparse.Namespace) -> int:
    from deploy.tensorrt_engine import BuildOptions, build_engine, require_tensorrt_and_gpu

    require_tensorrt_and_gpu()  # fail fast, before exporting or loading calibration data
    batch_sizes = args.batch
    if not (args.model / ONNX_FILE).is_file():
        from deploy.onnx_export import export_onnx

        log.info("%s has no %s: exporting it first", args.model, ONNX_FILE)
        export_onnx(args.model)
    images = _calibration_images(args) if args.precision == "int8" else None
    record = build_engine(
        args.model,
        BuildOptions(
            precision=args.precision,
            batch_sizes=batch_sizes,
            timing_cache=args.timing_cache,
            calibration_images=images,
            calibration_batch=args.calibration_batch,
            workspace_gib=args.workspace_gib,
        ),
    )
    report: dict[str, Any] = {"engine": str(record.path), "metadata": record.metadata.model_dump(mode="json")}
    if not args.no_verify:
        parity = _check(
            args.model, "onnxruntime", {"device": "cpu"}, "tensorrt", {"engine": record.path}, args.precision
        )
        report["parity"] = _parity_dict(parity)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        meta = record.metadata
        print(
            f"wrote {record.path} ({meta.precision}, batch {meta.batch_range[0]}..{meta.batch_range[1]}, "
            f"{meta.gpu}, TensorRT {meta.tensorrt_version})"
        )
        if "parity" in report:
            print(f"  {report['parity']['summary']}")
    return 0


def _calibration_images(args: argparse.Namespace) -> np.ndarray:
    """Normal training images for INT8 calibration, from the model's training data by default."""
    from deploy.calibration import pick_calibration_images

    card = load_card(args.model)
    spec = args.calibration_data or card.data.get("spec")
    if not spec:
        raise AgadError(f"{args.model}/model.json names no training data; pass --calibration-data SPEC")
    images = dataset_images(
        spec,
        card.input.image_size,
        split="train",
        normal_only=True,
        seed=int(card.data.get("seed", 0)),
        channels=card.input.channels,
    )
    return pick_calibration_images(images, np.zeros(len(images), np.int64), args.calibration_images)


def _check(
    model: Path,
    reference: str,
    ref_options: dict[str, Any],
    candidate: str,
    options: dict[str, Any],
    precision: str,
    batch: np.ndarray | None = None,
) -> Parity:
    """Compare two backends on ``batch`` (default: a random one); AgadError when they disagree beyond
    the tolerance of ``precision``."""
    card = load_card(model)
    if batch is None:
        batch = random_batch(4, card.input.channels, card.input.image_size)
    parity = compare(
        load_backend(model, reference, **ref_options),
        load_backend(model, candidate, **options),
        batch,
        precision,
    )
    if not parity.ok:
        raise AgadError(f"{model}: {parity}; the exported model does not reproduce the reference")
    return parity


def _parity_dict(parity: Parity) -> dict[str, Any]:
    return {
        "score_max_rel_diff": parity.score_rel,
        "heatmap_max_abs_diff": parity.heatmap_abs,
        "ok": parity.ok,
        "summary": str(parity),
    }
