"""INT8 against float32 in ONNX Runtime on this CPU: speed at 256 px colour, AUROC of trained models.

    python benchmarks/int8.py speed --runs 5
    python benchmarks/int8.py profile
    python benchmarks/int8.py parity --model models/fmnist0 --model models/fmnist1 --model models/elpv

``speed``: a randomly initialised naive generator at 256 px colour (its cost does not depend on its
weights), the INT8 graph calibrated on synthetic camera frames. Each run times, in interleaved
rounds at batch ``--batch`` with ``--threads`` threads, three graphs: float32 as ``agad export``
writes it, float32 with the decoder rewritten as plain convolutions (:mod:`deploy.phase_conv`, to
tell what the rewrite alone gives) and INT8. Ratios are taken within a run; the summary is their
median over runs. Result: benchmarks/results/int8/speed-<size>px-b<batch>.json.

``profile``: the same two graphs (float32 and INT8) run with ONNX Runtime's profiler, and the time
of every kernel added up by what it does: 8-bit convolutions, 8-bit data movement (the decoder's
interleavings and crops, layout transposes), conversions between float32 and 8 bits, and
float32 work by operator; ms per batch, the mean of ``--calls`` calls. It shows what is left in
float32 and what the 8-bit graph spends besides its convolutions. Result:
benchmarks/results/int8/profile-<size>px-b<batch>.json.

``parity``: each model directory (written by ``agad train``) is exported at both precisions, INT8
calibrated on the model's own training normals as ``agad export --precision int8`` does, and its
data set's headline test images (the test split less its hard groups, as docs/RESULTS.md counts
them) are scored by both graphs: AUROC of each and their difference, plus the share of those
images whose flag at the model's threshold differs. Result:
benchmarks/results/int8/parity-<model version>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agad_stream.datasets import dataset_images
from agad_stream.inference import load_backend
from agad_stream.inference.base import INPUT_NAME, INT8_ONNX_FILE, ONNX_FILE, Backend
from agad_stream.inference.bench import synthetic_frame
from agad_stream.inference.onnxruntime_backend import session_options
from agad_stream.model.artifact import save_model
from agad_stream.model.card import InputSpec, ModelCard, Threshold, load_card
from agad_stream.model.generator import build_generator
from agad_stream.preprocess import to_model_input
from benchmarks.common import write_result
from deploy.calibration import pick_calibration_images
from deploy.onnx_export import export_onnx
from trainer.data import load_dataset
from trainer.metrics import auroc

GRAPHS = ("fp32", "fp32-rewritten", "int8")


def synthetic_images(count: int, size: int, channels: int) -> np.ndarray:
    """uint8 (count, size, size, channels) decoded synthetic camera frames."""
    mode = cv2.IMREAD_COLOR if channels == 3 else cv2.IMREAD_GRAYSCALE
    frames = [
        cv2.imdecode(np.frombuffer(synthetic_frame(size, size, channels, seed=i), np.uint8), mode)
        for i in range(count)
    ]
    return np.stack(frames).reshape(count, size, size, channels)


def speed_models(root: Path, size: int, channels: int) -> dict[str, Path]:
    """The three graphs of one random naive model, each in a model directory of its own."""
    torch.manual_seed(0)
    card = ModelCard(
        model_version=f"bench-naive-{size}-{channels}ch",
        generator="naive",
        input=InputSpec(image_size=size, channels=channels, colour="rgb" if channels == 3 else "gray"),
        threshold=Threshold(value=1e30, method="never flags: the benchmark measures scoring"),
    )
    weights = build_generator("naive", size, channels).state_dict()
    dirs = {name: save_model(root / name, card, weights) for name in GRAPHS}
    export_onnx(dirs["fp32"])
    export_onnx(dirs["int8"], calibration_images=synthetic_images(64, size, channels))
    export_onnx(dirs["fp32-rewritten"], rewrite_decoder=True)
    return dirs


def images_per_second(backend: Backend, batch: np.ndarray, calls: int) -> float:
    backend.predict(batch)
    started = time.perf_counter()
    for _ in range(calls):
        backend.predict(batch)
    return calls * len(batch) / (time.perf_counter() - started)


def speed(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="agad-int8-") as tmp:
        dirs = speed_models(Path(tmp), args.size, args.channels)
        backends = {
            name: load_backend(
                d, "onnxruntime", threads=args.threads, precision="int8" if name == "int8" else "fp32"
            )
            for name, d in dirs.items()
        }
        batch = to_model_input(synthetic_images(args.batch, args.size, args.channels))
        fp32_scores = backends["fp32"].predict(batch)[0]
        int8_scores = backends["int8"].predict(batch)[0]
        runs = []
        for index in range(args.runs):
            rounds: dict[str, list[float]] = {name: [] for name in GRAPHS}
            for _ in range(args.rounds):
                for name, backend in backends.items():
                    rounds[name].append(images_per_second(backend, batch, args.calls))
            fps = {name: statistics.median(values) for name, values in rounds.items()}
            run = {
                "images_per_second": fps,
                "int8_vs_fp32": fps["int8"] / fps["fp32"],
                "rewritten_vs_fp32": fps["fp32-rewritten"] / fps["fp32"],
                "int8_vs_rewritten": fps["int8"] / fps["fp32-rewritten"],
            }
            runs.append(run)
            print(
                f"run {index + 1}: "
                + ", ".join(f"{k} {v:.2f}" for k, v in run.items() if k != "images_per_second")
            )
    summary = {
        key: statistics.median(r[key] for r in runs)
        for key in ("int8_vs_fp32", "rewritten_vs_fp32", "int8_vs_rewritten")
    }
    summary.update(
        {f"{name}_fps": statistics.median(r["images_per_second"][name] for r in runs) for name in GRAPHS}
    )
    summary["score_max_rel_diff_synthetic"] = float(
        np.max(np.abs(int8_scores - fp32_scores) / np.abs(fp32_scores))
    )
    settings = {
        k: getattr(args, k) for k in ("size", "channels", "batch", "threads", "runs", "rounds", "calls")
    }
    path = write_result(
        "int8", f"speed-{args.size}px-b{args.batch}", {"settings": settings, "runs": runs, "summary": summary}
    )
    print(
        f"{path}: int8 / fp32 {summary['int8_vs_fp32']:.2f} "
        f"(rewrite alone {summary['rewritten_vs_fp32']:.2f})"
    )


EIGHT_BIT = ("uint8", "int8")
CONVERSIONS = ("QuantizeLinear", "DequantizeLinear")


def kernel_group(op: str, input_type: str) -> str:
    """What a kernel of the INT8 or float32 graph does, for the profile's table."""
    if op.startswith("QLinear"):
        return "8-bit " + ("convolution" if op == "QLinearConv" else "other")
    if op in CONVERSIONS:
        return "conversion float32 <-> 8 bits"
    if input_type in EIGHT_BIT:
        return "8-bit data movement"
    return f"float32 {op}"


def kernel_ms(model: Path, batch: np.ndarray, threads: int, calls: int, prefix: Path) -> dict[str, float]:
    """ms per call of each kernel group of ``model``, from ONNX Runtime's profiler; the first call,
    which also allocates, is left out. The session has the scorer's options, and a profiler."""
    options = session_options(threads)
    options.enable_profiling, options.profile_file_prefix = True, str(prefix)
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    for _ in range(calls + 1):
        session.run(None, {INPUT_NAME: batch})
    events = json.loads(Path(session.end_profiling()).read_text())
    first = min((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    warm_from = first["ts"] + first["dur"]
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= warm_from:
            inputs = event["args"].get("input_type_shape") or [{}]
            input_type = next(iter(inputs[0]), "")
            totals[kernel_group(event["args"]["op_name"], input_type)] += event["dur"] / 1000 / calls
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def profile(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="agad-int8-") as tmp:
        dirs = speed_models(Path(tmp), args.size, args.channels)
        batch = to_model_input(synthetic_images(args.batch, args.size, args.channels))
        graphs = {"fp32": dirs["fp32"] / ONNX_FILE, "int8": dirs["int8"] / INT8_ONNX_FILE}
        kernels = {
            name: kernel_ms(path, batch, args.threads, args.calls, Path(tmp) / name)
            for name, path in graphs.items()
        }
    settings = {k: getattr(args, k) for k in ("size", "channels", "batch", "threads", "calls")}
    path = write_result(
        "int8", f"profile-{args.size}px-b{args.batch}", {"settings": settings, "kernel_ms": kernels}
    )
    for name, groups in kernels.items():
        print(f"{name}: {sum(groups.values()):.1f} ms per batch of kernels")
        for group, ms in groups.items():
            print(f"  {group:40s} {ms:8.1f}")
    print(f"wrote {path}")


def test_scores(backend: Backend, images: np.ndarray, batch: int = 64) -> np.ndarray:
    return np.concatenate(
        [
            backend.predict(to_model_input(images[i : i + batch]), heatmaps=False)[0]
            for i in range(0, len(images), batch)
        ]
    )


def parity(args: argparse.Namespace) -> None:
    for model_dir in args.model:
        card = load_card(model_dir)
        spec, seed = card.data["spec"], int(card.data.get("seed", 0))
        size, channels = card.input.image_size, card.input.channels
        normals = dataset_images(spec, size, split="train", normal_only=True, seed=seed, channels=channels)
        calibration = pick_calibration_images(
            normals, np.zeros(len(normals), np.int64), args.calibration_images
        )
        started = time.perf_counter()
        export_onnx(model_dir)
        export_onnx(model_dir, calibration_images=calibration)
        export_seconds = time.perf_counter() - started
        test = load_dataset(spec, size, seed=seed, channels=channels).headline_test()
        result: dict[str, Any] = {
            "model": str(model_dir),
            "data": spec,
            "image_size": size,
            "test_images": len(test.labels),
        }
        scores = {}
        for precision in ("fp32", "int8"):
            backend = load_backend(model_dir, "onnxruntime", threads=args.threads, precision=precision)
            scores[precision] = test_scores(backend, test.images)
            result[f"auroc_{precision}"] = auroc(test.labels, scores[precision])
        result["auroc_int8_minus_fp32"] = result["auroc_int8"] - result["auroc_fp32"]
        threshold = card.threshold.value
        flips = (scores["fp32"] > threshold) != (scores["int8"] > threshold)
        result["flag_changes"] = float(flips.mean())
        result["score_rank_correlation"] = float(
            np.corrcoef(_ranks(scores["fp32"]), _ranks(scores["int8"]))[0, 1]
        )
        result["export_seconds"] = export_seconds
        result["calibration_images"] = len(calibration)
        path = write_result("int8", f"parity-{card.model_version}", result)
        print(
            f"{path}: AUROC fp32 {result['auroc_fp32']:.4f}, int8 {result['auroc_int8']:.4f} "
            f"({result['auroc_int8_minus_fp32']:+.4f}); flags changed on {result['flag_changes']:.1%}"
        )


def _ranks(values: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(values)).astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(required=True)
    fast = commands.add_parser("speed", help="INT8 vs float32 images/s of a 256 px colour naive generator")
    fast.add_argument("--size", type=int, default=256)
    fast.add_argument("--channels", type=int, choices=[1, 3], default=3)
    fast.add_argument("--batch", type=int, default=8)
    fast.add_argument("--threads", type=int, default=2)
    fast.add_argument("--runs", type=int, default=5)
    fast.add_argument("--rounds", type=int, default=3, help="interleaved rounds per run")
    fast.add_argument("--calls", type=int, default=5, help="timed calls per graph and round")
    fast.set_defaults(func=speed)
    where = commands.add_parser("profile", help="where the INT8 and float32 graphs spend their time")
    where.add_argument("--size", type=int, default=256)
    where.add_argument("--channels", type=int, choices=[1, 3], default=3)
    where.add_argument("--batch", type=int, default=8)
    where.add_argument("--threads", type=int, default=2)
    where.add_argument("--calls", type=int, default=10, help="profiled calls per graph")
    where.set_defaults(func=profile)
    same = commands.add_parser("parity", help="test AUROC of trained models at float32 and INT8")
    same.add_argument(
        "--model", type=Path, action="append", required=True, help="model directory (repeatable)"
    )
    same.add_argument("--calibration-images", type=int, default=256)
    same.add_argument("--threads", type=int, default=2)
    same.set_defaults(func=parity)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
