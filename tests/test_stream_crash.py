"""A worker killed with SIGKILL mid-stream and started again: nothing missing, no duplicate review item.

Each kill waits on an event in the worker's log (a batch it holds unfinished), never on the clock."""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import redis

from agad_stream.config import Settings
from deploy.services import manager
from tests.stream_support import (
    ServeProcess,
    distinct_ids,
    make_frames,
    middle_threshold,
    offline_scores,
    produce,
    read_all,
    read_topic,
    review_frame_ids,
)
from tests.support import KafkaClients, Services

FRAMES = 400
HOLD_MS = 5_000  # ten times what the broker takes to stop here; under the 10 s session timeout


def test_sigkill_and_restart_lose_nothing(
    services: Services,
    settings: Settings,
    kafka_clients: KafkaClients,
    redis_client: redis.Redis,
    stream_models: dict[str, Path],
    serve: Callable[..., ServeProcess],
) -> None:
    """Killed after a third of the frames, while it holds a scored batch it could not finish (Redis
    is away, so its flagged frames cannot be queued): its successor scores that batch again."""
    services.require_managed("redis")
    model = stream_models["a"]
    threshold = middle_threshold(offline_scores(model))
    first = serve(model, "first", threshold=threshold, max_batch=8)
    first.wait_assigned()
    producer = kafka_clients.producer()
    frames = produce(producer, settings.kafka.topics.frames, make_frames(FRAMES // 3))
    scores_topic = settings.kafka.topics.scores
    read_topic(settings, scores_topic, lambda r: len(distinct_ids(r)) >= len(frames), "a third of the scores")
    admin = kafka_clients.admin()  # connected before Redis goes
    manager.down(services.local, "redis")
    try:
        frames += produce(
            producer, settings.kafka.topics.frames, make_frames(FRAMES - len(frames), len(frames))
        )
        first.wait_for(lambda text: "pausing intake" in text, "the worker to hold a batch it cannot finish")
        first.stop(signal.SIGKILL)
    finally:
        manager.up(services.local, "redis")
    assert first.proc.returncode == -signal.SIGKILL

    group = settings.kafka.group_id
    committed = {
        tp.partition: meta.offset for tp, meta in admin.list_group_offsets({group: None})[group].items()
    }
    assert sum(committed.values()) < FRAMES

    second = serve(model, "second", threshold=threshold, max_batch=8)
    read_topic(settings, scores_topic, lambda r: len(distinct_ids(r)) >= FRAMES, "every frame's score")
    assert second.stop() == 0

    scores = [json.loads(r.value) for r in read_all(settings, scores_topic)]
    counts = Counter(s["frame_id"] for s in scores)
    assert set(counts) == {f.frame_id for f in frames}, "a frame is missing from the scores topic"
    for frame in frames:
        if frame.offset < committed.get(frame.partition, 0):
            assert counts[frame.frame_id] == 1, f"{frame.frame_id} was committed, yet scored again"
    flagged = {s["frame_id"] for s in scores if s["score"] >= threshold}
    assert any(counts[frame_id] > 1 for frame_id in flagged), "no flagged frame was scored twice: no replay"
    queued = review_frame_ids(redis_client, settings.redis.key_prefix)
    assert len(queued) == len(set(queued)), "an operator would see a frame twice"
    assert set(queued) == flagged


def test_a_replay_after_a_kill_queues_no_review_item_twice(
    services: Services,
    settings: Settings,
    kafka_clients: KafkaClients,
    redis_client: redis.Redis,
    stream_models: dict[str, Path],
    serve: Callable[..., ServeProcess],
) -> None:
    """Killed with review items stored and offsets not committed (the broker went away between the
    two), the worker's successor replays those frames: it scores them and finds their review items
    already queued."""
    services.require_managed("kafka")
    model = stream_models["a"]
    # Every frame flagged; the 16 frames fetched wait in one unfilled batch for HOLD_MS, so the
    # broker is gone before the batch is delivered (however fast the worker fetched them).
    first = serve(model, "first", threshold=-1e9, max_batch=32, max_wait_ms=HOLD_MS)
    first.wait_assigned()
    producer = kafka_clients.producer()
    frames = produce(producer, settings.kafka.topics.frames, make_frames(16))
    producer.close(timeout=10)
    stream = settings.redis.key_prefix + "review:pending"
    manager.down(services.local, "kafka")
    try:
        first.wait_for(  # review items stored; then either the scores or the commit cannot go out
            lambda text: "pausing intake" in text or "commit postponed" in text,
            "the worker to wait for the broker",
        )
        stored = review_frame_ids(redis_client, settings.redis.key_prefix)
        first.stop(signal.SIGKILL)
    finally:
        manager.up(services.local, "kafka")
    assert stored, "no review item was stored before the kill"
    second = serve(model, "second", threshold=-1e9, max_batch=8)
    second.wait_for(lambda text: "were queued before and are not queued again" in text, "the replay")
    scores_topic = settings.kafka.topics.scores
    read_topic(settings, scores_topic, lambda r: len(distinct_ids(r)) >= len(frames), "every frame's score")
    assert second.stop() == 0
    # The replay is the log line above; whether the first worker's scores reached the topic
    # depends on when the broker went, so a replayed frame has one score record or two.
    counts = Counter(json.loads(r.value)["frame_id"] for r in read_all(settings, scores_topic))
    assert set(counts) == {f.frame_id for f in frames}, "a frame is missing from the scores topic"
    queued = review_frame_ids(redis_client, settings.redis.key_prefix)
    assert len(queued) == len(set(queued)) == len(frames)  # the replayed frames' items: once each
    assert set(stored) <= set(queued) and redis_client.xlen(stream) == len(frames)
