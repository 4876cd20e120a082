"""Redis goes away mid-stream: the worker pauses, commits nothing it could not store, and catches up."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
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


def test_redis_outage_pauses_intake_and_loses_nothing(
    services: Services,
    settings: Settings,
    kafka_clients: KafkaClients,
    redis_client: redis.Redis,
    stream_models: dict[str, Path],
    serve: Callable[..., ServeProcess],
) -> None:
    services.require_managed("redis")
    worker = serve(stream_models["a"], "w1", threshold=0.0, max_batch=8)  # every frame goes to Redis
    worker.wait_assigned()
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
        assert sum(committed(kafka_clients, group).values()) == len(first), "committed unqueued frames"
    finally:
        manager.up(services.local, "redis")
    worker.wait_for(lambda text: "intake resumed" in text, "the worker to resume")
    read_topic(settings, scores, lambda r: len(distinct_ids(r)) >= 80, "every score")
    assert worker.stop() == 0
    queued = review_frame_ids(redis_client, settings.redis.key_prefix)
    assert len(queued) == len(set(queued)) == 80
    assert sum(committed(kafka_clients, group).values()) == 80


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_a_stall_stops_without_committing_the_stalled_batch(
    sig: int,
    services: Services,
    settings: Settings,
    kafka_clients: KafkaClients,
    redis_client: redis.Redis,
    stream_models: dict[str, Path],
    serve: Callable[..., ServeProcess],
) -> None:
    services.require_managed("redis")
    worker = serve(stream_models["a"], "w1", threshold=0.0, max_batch=8)
    worker.wait_assigned()
    producer = kafka_clients.producer()
    produce(producer, settings.kafka.topics.frames, make_frames(16))
    read_topic(
        settings, settings.kafka.topics.scores, lambda r: len(distinct_ids(r)) >= 16, "the first scores"
    )
    group = settings.kafka.group_id
    kafka_clients.admin()
    try:
        manager.down(services.local, "redis")
        produce(producer, settings.kafka.topics.frames, make_frames(16, start=16))
        worker.wait_for(lambda text: "pausing intake" in text, "the worker to pause")
        assert worker.stop(sig, timeout=60) == 0  # it leaves promptly, although outputs are pending
        assert "uncommitted; they will be scored again" in worker.text()
        assert sum(committed(kafka_clients, group).values()) == 16
    finally:
        manager.up(services.local, "redis")
    second = serve(stream_models["a"], "w2", threshold=0.0, max_batch=8)
    # The stalled batch's scores went out before the stop (only Redis was away): wait for the replay.
    deadline = time.monotonic() + 120
    while sum(committed(kafka_clients, group).values()) < 32 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert second.stop() == 0
    queued = review_frame_ids(redis_client, settings.redis.key_prefix)
    assert len(queued) == len(set(queued)) == 32  # the replay queued nothing twice
    assert sum(committed(kafka_clients, group).values()) == 32
