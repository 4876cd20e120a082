"""Redis goes away mid-stream: the worker pauses, commits nothing it could not store, and catches up."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from agad_stream.config import Settings
from deploy.services import manager
from tests.stream_support import (
    ServeProcess,
    distinct_ids,
    make_frames,
    produce,
    read_topic,
    review_frame_ids,
)
from tests.support import KafkaClients, Services


def committed_total(kafka_clients: KafkaClients, group: str) -> int:
    offsets = kafka_clients.admin().list_group_offsets({group: None})[group]
    return sum(meta.offset for meta in offsets.values() if meta.offset > 0)


def test_redis_outage_pauses_intake_and_loses_nothing(
    services: Services,
    settings: Settings,
    kafka_clients: KafkaClients,
    redis_client: redis.Redis,
    stream_models: dict[str, Path],
    serve: Callable[..., ServeProcess],
) -> None:
    if services.agad_managed("redis") is None:
        pytest.skip("this test stops and restarts Redis, so it needs one that agad manages")
    worker = serve(stream_models["a"], "w1", threshold=0.0, max_batch=8)  # every frame goes to Redis
    worker.wait_for(lambda _: bool(worker.assigned()), "the worker to get partitions")
    producer = kafka_clients.producer()
    first = produce(producer, settings.kafka.topics.frames, make_frames(40))
    scores = settings.kafka.topics.scores
    read_topic(settings, scores, lambda r: len(distinct_ids(r)) >= 40, "the first scores")
    group = settings.kafka.group_id
    kafka_clients.admin()  # connect before Redis goes
    try:
        manager.down(services.local, "redis")
        produce(producer, settings.kafka.topics.frames, make_frames(40, start=40))
        worker.wait_for(lambda text: "pausing intake" in text, "the worker to pause")
        assert committed_total(kafka_clients, group) == len(first), "committed frames it could not queue"
    finally:
        manager.up(services.local, "redis")
    worker.wait_for(lambda text: "intake resumed" in text, "the worker to resume")
    read_topic(settings, scores, lambda r: len(distinct_ids(r)) >= 80, "every score")
    assert worker.stop() == 0
    queued = review_frame_ids(redis_client, settings.redis.key_prefix)
    assert len(queued) == len(set(queued)) == 80
    assert committed_total(kafka_clients, group) == 80
