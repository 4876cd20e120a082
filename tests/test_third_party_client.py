"""A camera system on another Kafka client (librdkafka, through confluent-kafka, as kcat uses it).

The topics come from `agad topics create`; frames, one of them 8 MB, go in through librdkafka; the
scores and dead letters come back out through it: the contract holds for clients that are not ours.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from confluent_kafka import Consumer, Producer

from agad_stream.config import Settings
from tests.stream_support import ServeProcess, jpeg, worker_env
from tests.support import WAIT_S

Agad = Callable[..., subprocess.CompletedProcess[str]]
EIGHT_MB = 8 * 1024 * 1024


def eight_megabyte_png() -> bytes:
    """A colour PNG of noise (it does not compress) of at least 8 MiB: a 5-megapixel camera's frame."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1700, 1700, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    assert len(encoded) >= EIGHT_MB
    return encoded.tobytes()


def headers_of(frame_id: str, camera: str, content_type: str) -> list[tuple[str, bytes]]:
    return [
        ("frame_id", frame_id.encode()),
        ("camera_id", camera.encode()),
        ("ts_ms", str(int(time.time() * 1000)).encode()),
        ("content_type", content_type.encode()),
    ]


def consume(settings: Settings, topic: str, count: int) -> list[Any]:
    """``count`` messages of ``topic`` read from the beginning with librdkafka."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"{settings.kafka.group_id}.reader",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + WAIT_S
    try:
        while len(messages) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                messages.append(message)
    finally:
        consumer.close()
    assert len(messages) == count, f"read {len(messages)} of {count} messages from {topic}"
    return messages


def test_librdkafka_camera_with_an_eight_megabyte_frame(
    bare_settings: Settings,
    agad: Agad,
    stream_models: dict[str, Path],
    serve: Callable[..., ServeProcess],
) -> None:
    settings = bare_settings
    env = worker_env(settings)
    created = agad("topics", "create", "--json", env=env)
    assert created.returncode == 0, created.stderr
    assert [t["action"] for t in json.loads(created.stdout)] == ["created"] * 5
    again = agad("topics", "create", "--json", env=env)
    assert [t["action"] for t in json.loads(again.stdout)] == ["unchanged"] * 5
    described = {t["name"]: t for t in json.loads(agad("topics", "describe", "--json", env=env).stdout)}
    topics = settings.kafka.topics
    assert len(described[topics.frames]["partitions"]) == 4
    assert int(described[topics.frames]["configs"]["max.message.bytes"]) > 16 * 1024 * 1024
    assert described[topics.labels]["configs"]["cleanup.policy"] == "compact"

    producer = Producer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "acks": "all",
            "message.max.bytes": 20_000_000,
        }
    )
    placed: dict[str, tuple[int, int]] = {}
    failed: list[str] = []

    def delivered(frame_id: str) -> Callable[[Any, Any], None]:
        def report(error: Any, message: Any) -> None:  # librdkafka's callback must not raise
            if error is not None:
                failed.append(f"{frame_id}: {error}")
            else:
                placed[frame_id] = (message.partition(), message.offset())

        return report

    good = {f"rdk-{n:02d}": (jpeg(n), "image/jpeg") for n in range(12)}
    good["rdk-big"] = (eight_megabyte_png(), "image/png")
    for n, (frame_id, (value, content_type)) in enumerate(good.items()):
        camera = f"cam-{n % 4:02d}"
        producer.produce(
            topics.frames,
            key=camera,
            value=value,
            headers=headers_of(frame_id, camera, content_type),
            on_delivery=delivered(frame_id),
        )
    bad_headers = headers_of("rdk-bad", "cam-00", "image/jpeg")
    producer.produce(
        topics.frames,
        key="cam-00",
        value=b"not a jpeg",
        headers=bad_headers,
        on_delivery=delivered("rdk-bad"),
    )
    assert producer.flush(60) == 0
    assert not failed and len(placed) == len(good) + 1

    worker = serve(stream_models["a"], "w1")
    worker.wait_assigned()
    scores = [json.loads(m.value()) for m in consume(settings, topics.scores, len(good))]
    assert sorted(s["frame_id"] for s in scores) == sorted(good)
    assert all(s["model_version"] == "stream-a" and s["threshold"] == 1.0 for s in scores)

    (letter,) = consume(settings, topics.dead_letter, 1)
    assert letter.value() == b"not a jpeg" and letter.key() == b"cam-00"
    headers = {name: value.decode() for name, value in letter.headers()}
    partition, offset = placed["rdk-bad"]
    assert headers["frame_id"] == "rdk-bad" and headers["error"].startswith("cannot decode image/jpeg")
    assert (headers["source_topic"], headers["source_partition"], headers["source_offset"]) == (
        topics.frames,
        str(partition),
        str(offset),
    )
