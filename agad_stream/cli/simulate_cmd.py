"""``agad simulate``: cameras publishing frames to Kafka (see :mod:`agad_stream.stream.simulator`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from agad_stream.cli import args as types
from agad_stream.config import load_settings
from agad_stream.errors import AgadError
from agad_stream.stream.simulator import CORRUPTIONS, FORMATS, RAW, Simulator, load_images


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="publish camera frames from a data set to the frames topic",
        description="Send images of a data set as frames of --cameras cameras (key and camera_id cam-00, "
        "cam-01, ...) at --fps frames per second each, with the headers of the frames contract, until "
        f"--count frames are sent or --duration has passed. --corrupt-rate spoils a share of frames "
        f"({', '.join(sorted(CORRUPTIONS))}) to exercise the dead-letter path.",
    )
    parser.add_argument(
        "--data", required=True, help="folder:PATH (no trainer needed), fmnist:<class> or elpv"
    )
    parser.add_argument(
        "--cameras", type=types.integer(1, 1000), default=4, help="number of cameras (default 4)"
    )
    parser.add_argument(
        "--fps", type=types.number(0), default=10.0, help="frames per second per camera; 0 = unpaced"
    )
    parser.add_argument(
        "--corrupt-rate", type=types.fraction, default=0.0, help="share of spoilt frames (default 0)"
    )
    parser.add_argument("--count", type=types.non_negative, help="frames to send in all")
    parser.add_argument(
        "--duration",
        type=types.number(0, low_open=True),
        help="seconds to send for (default: until --count, or forever)",
    )
    parser.add_argument(
        "--format", choices=[*FORMATS, RAW], default="jpeg", help="frame encoding (default jpeg)"
    )
    parser.add_argument(
        "--image-size",
        type=types.image_size,
        default=64,
        help="size the images of fmnist and elpv are resized to (default 64; folder images keep theirs)",
    )
    parser.add_argument(
        "--seed", type=types.non_negative, default=0, help="seed of the image order and corruptions"
    )
    parser.add_argument("--topic", help="topic to send to (default AGAD_KAFKA__TOPICS__FRAMES)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=simulate)


def simulate(args: argparse.Namespace) -> int:
    settings = load_settings()
    images = load_images(args.data, args.image_size)
    try:
        producer = KafkaProducer(
            **settings.kafka.client_options(),
            **settings.kafka.producer_size_options(),
            acks="all",
            linger_ms=5,
        )
    except (KafkaError, OSError) as exc:
        raise AgadError(
            f"cannot reach Kafka at {settings.kafka.bootstrap_servers} ({exc!r}); check "
            "AGAD_KAFKA__BOOTSTRAP_SERVERS, or start a local broker with `agad services up`"
        ) from None
    simulator = Simulator(
        producer,
        args.topic or settings.kafka.topics.frames,
        images,
        cameras=args.cameras,
        fps=args.fps,
        fmt=args.format,
        corrupt_rate=args.corrupt_rate,
        seed=args.seed,
    )
    try:
        report = simulator.run(count=args.count, duration_s=args.duration)
    finally:
        producer.close(timeout=30)
    summary = {
        "topic": simulator.topic,
        "run_id": simulator.run_id,
        "sent": report.sent,
        "corrupted": dict(report.corrupted),
        "seconds": round(report.seconds, 3),
        "frames_per_second": round(report.sent / report.seconds, 1) if report.seconds else None,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        corrupted = sum(report.corrupted.values())
        print(
            f"sent {report.sent} frames of {args.cameras} cameras to {simulator.topic} "
            f"in {report.seconds:.1f} s ({corrupted} corrupted); frame ids *-{simulator.run_id}-*"
        )
    return 0
