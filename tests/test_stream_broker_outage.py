"""The broker goes away for 15 s in the middle of a stream: the scorer waits it out, resumes on its
own, and every frame is scored, queued for review once, and committed."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import redis

from agad_stream.config import Settings
from deploy.services import manager
from tests.stream_support import (
    ServeProcess,
    committed,
    distinct_ids,
    make_frames,
    produce,
    read_topic,
    review_frame_ids,
)
from tests.support import KafkaClients, Services

OUTAGE_S = 15


def test_a_broker_outage_mid_stream_loses_nothing(
    services: Services,
    settings: Settings,
    kafka_clients: KafkaClients,
    redis_client: redis.Redis,
    stream_models: dict[str, Path],
    serve: Callable[..., ServeProcess],
) -> None:
    services.require_managed("kafka")
    worker = serve(stream_models["a"], "w1", threshold=0.0, max_batch=8)  # every frame to Redis too
    worker.wait_assigned()
    producer = kafka_clients.producer()
    produce(producer, settings.kafka.topics.frames, make_frames(40))  # not waited for: mid-stream
    producer.close(timeout=10)
    manager.down(services.local, "kafka")
    try:
        time.sleep(OUTAGE_S)
        assert worker.proc.poll() is None, "the scorer died while the broker was away"
    finally:
        manager.up(services.local, "kafka")
    produce(kafka_clients.producer(), settings.kafka.topics.frames, make_frames(40, start=40))
    read_topic(settings, settings.kafka.topics.scores, lambda r: len(distinct_ids(r)) >= 80, "every score")
    group, deadline = settings.kafka.group_id, time.monotonic() + 120
    while sum(committed(kafka_clients, group).values()) < 80 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert sum(committed(kafka_clients, group).values()) == 80
    assert worker.stop() == 0
    queued = review_frame_ids(redis_client, settings.redis.key_prefix)
    assert len(queued) == len(set(queued)) == 80
