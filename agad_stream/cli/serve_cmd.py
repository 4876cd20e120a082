"""``agad serve``: the streaming scorer (see :mod:`agad_stream.stream.worker`)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer
from kafka.errors import KafkaError

from agad_stream.cli import args as types
from agad_stream.config import Settings, load_settings
from agad_stream.connections import redis_client
from agad_stream.errors import AgadError
from agad_stream.inference import BACKEND_KINDS, Backend, backend_options, load_backend
from agad_stream.logs import use_json_logs
from agad_stream.model.card import CARD
from agad_stream.model.registry import POINTER, current_version, is_registry
from agad_stream.stream.clients import connect
from agad_stream.stream.metrics import Metrics
from agad_stream.stream.reload import ModelWatch
from agad_stream.stream.worker import Worker

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="score frames from Kafka: scores, review queue and dead letters",
        description="Join the scorer group, score frames in micro-batches and publish a verdict per frame to "
        "the scores topic, flagged frames to the Redis review queue and frames that cannot be scored to the "
        "dead-letter topic; commit offsets only after all of that is stored. Reloads the model on a models "
        "event or when the registry pointer changes. Stops cleanly on SIGTERM or Ctrl-C. The threshold is "
        "--threshold or AGAD_SCORER__THRESHOLD when set, else the one calibrated at training, in the model's "
        "model.json (threshold.value, and threshold.method says how); the log names it at every model load "
        "and the metric agad_threshold shows it.",
    )
    parser.add_argument(
        "--model",
        type=types.model_or_registry,
        help="model directory, or a registry folder with a `current` pointer (default: AGAD_REGISTRY)",
    )
    parser.add_argument("--backend", choices=BACKEND_KINDS, help="inference backend (AGAD_SCORER__BACKEND)")
    types.add_backend_flags(parser)
    parser.add_argument(
        "--lanes",
        type=types.positive,
        help="ONNX Runtime on the CPU: batches scored at once, each on --threads threads "
        "(AGAD_SCORER__LANES, default 1). Two one-thread lanes on two cores raise throughput at full load; a "
        "lone small batch then runs on one thread",
    )
    parser.add_argument(
        "--max-batch", type=types.integer(1, 1024), help="batch size limit (AGAD_SCORER__MAX_BATCH)"
    )
    parser.add_argument(
        "--max-wait-ms",
        type=types.number(0, 10_000),
        help="latency budget of a batch (AGAD_SCORER__MAX_WAIT_MS)",
    )
    parser.add_argument(
        "--threshold",
        type=types.score_value,
        help="flag scores at or above this instead of the model's calibrated threshold "
        "(AGAD_SCORER__THRESHOLD)",
    )
    parser.add_argument(
        "--metrics-port", type=types.port, help="Prometheus port, 0 = off (AGAD_SCORER__METRICS_PORT)"
    )
    parser.add_argument("--log-format", choices=("text", "json"), help="AGAD_SCORER__LOG_FORMAT")
    parser.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    flags = {
        "backend": args.backend,
        "lanes": args.lanes,
        "max_batch": args.max_batch,
        "max_wait_ms": args.max_wait_ms,
        "threshold": args.threshold,
        "metrics_port": args.metrics_port,
        "log_format": args.log_format,
    }
    base = load_settings()
    scorer = base.scorer.model_validate(
        {**base.scorer.model_dump(), **{k: v for k, v in flags.items() if v is not None}}
    )
    settings = base.model_copy(update={"scorer": scorer})
    if settings.scorer.log_format == "json":
        use_json_logs()

    source = args.model or settings.registry
    model_dir, registry = resolve_model(source, from_flag=args.model is not None)
    lanes = settings.scorer.lanes if settings.scorer.lanes > 1 else None  # other backends take no lanes
    options = backend_options(settings.scorer.backend, args.device, args.threads, args.precision, lanes)

    def load(directory: Path) -> Backend:
        return load_backend(directory, settings.scorer.backend, **options)

    backend = load(model_dir)
    check_services(settings)
    metrics = Metrics()
    try:
        metrics.serve(settings.scorer.metrics_port)
    except OSError as exc:
        raise AgadError(
            f"cannot serve metrics on port {settings.scorer.metrics_port} ({exc}); set "
            "AGAD_SCORER__METRICS_PORT (or --metrics-port) to a free port, or 0 to turn metrics off"
        ) from None
    watch = ModelWatch(_models_consumer(settings), settings.kafka.topics.models, settings.registry, registry)
    worker = Worker(settings, model_dir, backend, load, connect(settings), watch=watch, metrics=metrics)
    worker.install_signal_handlers()
    worker.run()
    return 0


def resolve_model(path: Path, *, from_flag: bool) -> tuple[Path, Path | None]:
    """(model directory to load, registry to watch or None) for ``--model`` or ``AGAD_REGISTRY``."""
    if is_registry(path):
        return current_version(path), path
    if (path / CARD).is_file():
        return path, None
    where = "--model" if from_flag else "AGAD_REGISTRY (no --model given)"
    raise AgadError(
        f"{where} {path} is neither a model directory (with {CARD}) nor a registry (with a `{POINTER}` "
        "file naming a version directory); pass --model DIR or set AGAD_REGISTRY to the registry folder"
    )


def check_services(settings: Settings) -> None:
    """Fail early, naming the setting to fix, when Kafka, its topics or Redis are not there."""
    kafka = settings.kafka
    try:
        probe = KafkaConsumer(**kafka.client_options(), enable_auto_commit=False, bootstrap_timeout_ms=15_000)
    except (KafkaError, OSError) as exc:
        raise AgadError(
            f"cannot reach Kafka at {kafka.bootstrap_servers} ({exc!r}); check AGAD_KAFKA__BOOTSTRAP_SERVERS "
            "and the AGAD_KAFKA__SECURITY_* settings, or start a local broker with `agad services up`"
        ) from None
    try:
        existing = probe.topics()
    finally:
        probe.close()
    needed = {
        "AGAD_KAFKA__TOPICS__FRAMES": kafka.topics.frames,
        "AGAD_KAFKA__TOPICS__SCORES": kafka.topics.scores,
        "AGAD_KAFKA__TOPICS__DEAD_LETTER": kafka.topics.dead_letter,
    }
    missing = [f"{name} ({variable})" for variable, name in needed.items() if name not in existing]
    if missing:
        raise AgadError(
            f"topic {', '.join(missing)} does not exist on {kafka.bootstrap_servers}; create the topics with "
            "`agad topics create`, or set the variable to an existing topic"
        )
    redis_client(settings).close()


def _models_consumer(settings: Settings) -> KafkaConsumer | None:
    topic = settings.kafka.topics.models
    consumer = KafkaConsumer(**settings.kafka.client_options(), enable_auto_commit=False)
    if topic in consumer.topics():
        return consumer
    consumer.close()
    log.warning(
        "topic %s (AGAD_KAFKA__TOPICS__MODELS) does not exist: hot reload on models events is off", topic
    )
    return None
