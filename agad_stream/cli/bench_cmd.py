"""``agad bench``: images/s and latency per backend and batch size, and the cost of preprocessing."""

from __future__ import annotations

import argparse
import json
import logging
import re
import statistics
from typing import Any

import numpy as np

from agad_stream.cli import args as types
from agad_stream.inference import BACKEND_KINDS, Backend, backend_options, load_backend
from agad_stream.inference.bench import (
    Timing,
    machine_summary,
    preprocessing_share,
    synthetic_frame,
    time_predict,
    time_preprocess,
)

log = logging.getLogger(__name__)
PREPROCESS_REFERENCE_SIZE = 256


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure images/s and latency of inference backends, and the cost of preprocessing",
        description="Time each --backend at each --batch size after warm-up, in --rounds that visit every "
        "backend and batch in turn (a background load then slows all alike); report the median images/s "
        "over rounds and latency p50/p99 over all calls. Also time preprocessing of a synthetic JPEG "
        "frame (decode, convert, resize, normalise) at the model size and at 256 px, and its share of "
        "the per-frame cost.",
    )
    parser.add_argument("--model", required=True, type=types.model_dir, help="model directory")
    parser.add_argument(
        "--backends",
        type=backend_list,
        default=["auto"],
        help=f"comma-separated backends to compare: {', '.join(BACKEND_KINDS)}, and onnxruntime:int8 for "
        "ONNX Runtime's INT8 graph beside its fp32 one (default auto)",
    )
    parser.add_argument(
        "--batch", type=types.batch_sizes, default=[1, 8, 32], help="batch sizes (default 1,8,32)"
    )
    parser.add_argument(
        "--iterations", type=types.positive, default=20, help="timed calls per backend, batch and round"
    )
    parser.add_argument(
        "--warmup", type=types.non_negative, default=3, help="untimed calls before each measurement"
    )
    parser.add_argument(
        "--rounds", type=types.positive, default=3, help="rounds over all backends and batches (default 3)"
    )
    types.add_backend_flags(parser)
    parser.add_argument("--no-heatmaps", action="store_true", help="scores only (skip copying heat-maps)")
    parser.add_argument(
        "--frame-size",
        type=frame_size,
        default=(640, 480),
        help="WxH of the synthetic JPEG frame to preprocess (default 640x480)",
    )
    parser.add_argument(
        "--preprocess-iterations", type=types.positive, default=100, help="frames timed per size and round"
    )
    types.add_json_flag(parser)
    parser.set_defaults(func=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    kinds = args.backends
    batches = args.batch
    width, height = args.frame_size
    machine_before = machine_summary()

    backends = [_load(args, kind) for kind in kinds]
    card = backends[0].card
    size, channels = card.input.image_size, card.input.channels
    rng = np.random.default_rng(0)
    inputs = {b: rng.uniform(-1, 1, (b, channels, size, size)).astype(np.float32) for b in batches}
    timings = {
        (i, b): Timing(backend.name, b, dict(backend.details))
        for i, backend in enumerate(backends)
        for b in batches
    }
    frame = synthetic_frame(width, height, channels)
    pre_sizes = sorted({size, PREPROCESS_REFERENCE_SIZE})
    pre_rounds: dict[int, list[float]] = {s: [] for s in pre_sizes}
    for round_index in range(args.rounds):
        log.info("round %d/%d", round_index + 1, args.rounds)
        for (i, b), timing in timings.items():
            timing.add_round(
                time_predict(
                    backends[i],
                    inputs[b],
                    iterations=args.iterations,
                    warmup=args.warmup,
                    heatmaps=not args.no_heatmaps,
                )
            )
        for s in pre_sizes:
            per_frame = time_preprocess(
                frame, image_size=s, channels=channels, iterations=args.preprocess_iterations
            )
            pre_rounds[s].append(statistics.median(per_frame) * 1000.0)

    preprocess_ms = {s: statistics.median(v) for s, v in pre_rounds.items()}
    report: dict[str, Any] = {
        "model": {
            "dir": str(args.model),
            "version": card.model_version,
            "generator": card.generator,
            "input": f"{channels}x{size}x{size}",
            "score": card.score.method,
        },
        "settings": {
            "batches": batches,
            "iterations": args.iterations,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "threads": args.threads,
            "heatmaps": not args.no_heatmaps,
        },
        "machine": {**machine_before, "load_average_after": machine_summary()["load_average"]},
        "results": [],
        "preprocessing": {
            "frame": f"JPEG {width}x{height}, {channels} channel(s), {len(frame)} bytes",
            "ms_per_frame": {str(s): round(v, 4) for s, v in preprocess_ms.items()},
        },
    }
    for timing in timings.values():
        entry = timing.as_dict()
        entry["preprocess_share"] = round(preprocessing_share(preprocess_ms[size], timing.ms_per_image), 4)
        report["results"].append(entry)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report, size)
    return 0


def _load(args: argparse.Namespace, entry: str) -> Backend:
    kind, _, precision = entry.partition(":")
    options = backend_options(kind, args.device, args.threads, precision or args.precision)
    return load_backend(args.model, kind, **options)


def frame_size(text: str) -> tuple[int, int]:
    """``640x480`` -> (640, 480), at least 8x8."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or min(int(match[1]), int(match[2])) < 8:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT, e.g. 640x480 (at least 8x8)")
    return int(match[1]), int(match[2])


def backend_list(text: str) -> list[str]:
    """``onnxruntime,onnxruntime:int8,torch`` -> the entries, each a backend kind of BACKEND_KINDS,
    the ONNX Runtime ones optionally with a precision (fp32, int8)."""
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    known = {*BACKEND_KINDS, "onnxruntime:fp32", "onnxruntime:int8", "auto:fp32", "auto:int8"}
    unknown = [entry for entry in entries if entry not in known]
    if not entries or unknown:
        raise argparse.ArgumentTypeError(
            f"{text!r}: choose from {', '.join(BACKEND_KINDS)} (onnxruntime also as onnxruntime:int8), "
            "comma-separated"
        )
    return entries


def _print_table(report: dict[str, Any], size: int) -> None:
    model, machine, settings = report["model"], report["machine"], report["settings"]
    print(
        f"model {model['version']} ({model['generator']}, {model['input']}, score {model['score']}); "
        f"{machine['cpus']} CPUs, load {machine['load_average'][0]} -> {machine['load_average_after'][0]}; "
        f"{settings['rounds']} rounds x {settings['iterations']} calls"
    )
    print(
        f"{'backend':<12} {'device':<8} {'prec':<5} {'batch':>5} {'images/s':>10} {'p50 ms':>9} "
        f"{'p99 ms':>9} {'ms/image':>9} {'preproc':>8}"
    )
    for r in report["results"]:
        print(
            f"{r['backend']:<12} {r['details'].get('device', ''):<8} {r['details'].get('precision', ''):<5} "
            f"{r['batch']:>5} "
            f"{r['images_per_second']:>10.1f} "
            f"{r['latency_p50_ms']:>9.3f} {r['latency_p99_ms']:>9.3f} {r['ms_per_image']:>9.3f} "
            f"{r['preprocess_share']:>7.0%}"
        )
    pre = report["preprocessing"]
    sizes = ", ".join(f"{s} px {ms:.3f} ms" for s, ms in pre["ms_per_frame"].items())
    print(f"preprocessing per frame ({pre['frame']}; decode, resize, normalise): {sizes}")
    print(
        f"preproc = preprocessing share of the per-frame cost at {size} px (preprocess + inference per image)"
    )
