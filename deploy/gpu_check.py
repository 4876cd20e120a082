"""The GPU inference path end to end, on the machine at hand (run it as ``deploy/gpu_check``).

1. make a small model (random weights) in a temporary directory and export it to ONNX;
2. build a TensorRT engine where TensorRT is installed, else use the torch CUDA half-precision
   backend (and ONNX Runtime's CUDA provider where that is installed);
3. check each GPU backend against ONNX Runtime on the CPU, on random inputs and on preprocessed
   synthetic camera frames, with the tolerance of its precision;
4. print the throughput table.

Exit status: 0 when every check passed within 5 minutes; 1 when a check failed or it took longer;
2 when there is no GPU (the message says what is missing).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from agad_stream.cli.args import batch_sizes, image_size, positive
from agad_stream.errors import AgadError
from agad_stream.inference import Backend, load_backend
from agad_stream.inference.bench import Timing, synthetic_frame, time_predict
from agad_stream.inference.engine import tensorrt_available
from agad_stream.model.generator import ARCHITECTURES, Architecture
from agad_stream.preprocess import prepare_image, to_model_input
from deploy.parity import Parity, compare, random_batch

TIME_LIMIT_S = 300.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=ARCHITECTURES, default="naive", help="generator (default naive)")
    parser.add_argument(
        "--image-size", type=image_size, default=64, help="image size, power of two 32..256 (default 64)"
    )
    parser.add_argument(
        "--channels", type=int, choices=[1, 3], default=3, help="1 grey or 3 colour (default 3)"
    )
    parser.add_argument(
        "--precision", choices=["fp16", "int8", "fp32"], default="fp16", help="TensorRT precision"
    )
    parser.add_argument("--batch", type=batch_sizes, default=[1, 8, 32], help="batch sizes (default 1,8,32)")
    parser.add_argument("--iterations", type=positive, default=30, help="timed calls per backend and batch")
    parser.add_argument("--keep", type=Path, help="write the model directory here instead of a temporary one")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        import torch

        if not torch.cuda.is_available():
            raise AgadError(
                "no NVIDIA GPU visible to torch (torch.cuda.is_available() is False); run this on a machine "
                "with an NVIDIA GPU, its driver and a CUDA build of torch"
            )
        if args.keep:
            ok = _check(args, args.keep, started)
        else:
            with tempfile.TemporaryDirectory(prefix="agad-gpu-check-") as tmp:
                ok = _check(args, Path(tmp) / "model", started)
    except AgadError as exc:
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 2
    elapsed = time.monotonic() - started
    print(f"\ngpu_check: {'passed' if ok else 'FAILED'} in {elapsed:.0f} s")
    if elapsed > TIME_LIMIT_S:
        print(f"gpu_check: took longer than {TIME_LIMIT_S:.0f} s", file=sys.stderr)
        return 1
    return 0 if ok else 1


def _check(args: argparse.Namespace, model_dir: Path, started: float) -> bool:
    import torch

    from deploy.onnx_export import export_onnx

    batches = args.batch
    print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}")
    _step(started, f"model: {args.arch}, {args.channels}x{args.image_size}x{args.image_size}, random weights")
    _make_model(model_dir, args.arch, args.image_size, args.channels)
    _step(started, "export to ONNX")
    export_onnx(model_dir)

    reference = load_backend(model_dir, "onnxruntime", device="cpu")
    candidates: list[tuple[Backend, str]] = []
    if tensorrt_available():
        from deploy.tensorrt_engine import BuildOptions, build_engine

        _step(started, f"build TensorRT {args.precision} engine (profiles for batch {batches})")
        calibration = _frames(64, args.image_size, args.channels) if args.precision == "int8" else None
        record = build_engine(
            model_dir,
            BuildOptions(precision=args.precision, batch_sizes=batches, calibration_images=calibration),
        )
        candidates.append((load_backend(model_dir, "tensorrt", engine=record.path), args.precision))
    else:
        _step(started, "TensorRT is not installed: checking the torch CUDA half-precision backend instead")
    candidates.append((load_backend(model_dir, "torch", device="cuda", half=True), "fp16"))
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        candidates.append((load_backend(model_dir, "onnxruntime", device="cuda"), "tf32"))

    _step(started, "parity against ONNX Runtime on the CPU")
    inputs = {
        "random": random_batch(8, args.channels, args.image_size),
        "frames": to_model_input(_frames(8, args.image_size, args.channels)),
    }
    results: list[Parity] = []
    for backend, precision in candidates:
        for label, batch in inputs.items():
            parity = compare(reference, backend, batch, precision)
            results.append(parity)
            print(f"  [{label}] {parity}")

    _step(started, "throughput")
    timings = []
    for backend in [reference] + [b for b, _ in candidates]:
        for size in batches:
            timing = Timing(backend.name, size, dict(backend.details))
            batch = random_batch(size, args.channels, args.image_size, seed=size)
            timing.add_round(time_predict(backend, batch, iterations=args.iterations, warmup=5))
            timings.append(timing)
    print(
        f"{'backend':<12} {'device':<8} {'precision':<22} {'batch':>5} {'images/s':>10} "
        f"{'p50 ms':>8} {'p99 ms':>8}"
    )
    for t in timings:
        print(
            f"{t.backend:<12} {t.details.get('device', ''):<8} {t.details.get('precision', 'fp32'):<22} "
            f"{t.batch:>5} {t.images_per_second:>10.1f} {t.p50_ms:>8.3f} {t.p99_ms:>8.3f}"
        )
    return all(p.ok for p in results)


def _make_model(model_dir: Path, arch: Architecture, size: int, channels: int) -> None:
    import torch

    from agad_stream.model.artifact import save_model
    from agad_stream.model.card import InputSpec, ModelCard, Threshold
    from agad_stream.model.generator import build_generator

    torch.manual_seed(0)
    generator = build_generator(arch, size, channels)
    card = ModelCard(
        model_version=f"gpu-check-{arch}-{size}",
        generator=arch,
        input=InputSpec(image_size=size, channels=channels, colour="gray" if channels == 1 else "rgb"),
        threshold=Threshold(value=1.0, method="none: random weights for a deployment check"),
    )
    save_model(model_dir, card, generator.state_dict())


def _frames(count: int, size: int, channels: int) -> np.ndarray:
    """Synthetic camera frames through the shared preprocessing: uint8 (count, size, size, channels)."""
    frames = [synthetic_frame(640, 480, channels, seed=i) for i in range(count)]
    return np.stack([prepare_image(f, "image/jpeg", image_size=size, channels=channels) for f in frames])


def _step(started: float, text: str) -> None:
    print(f"[{time.monotonic() - started:5.1f} s] {text}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
