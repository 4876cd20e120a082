"""A worker killed with SIGKILL mid-stream and started again: nothing missing, no duplicate review item."""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import redis

from agad_stream.config import Settings
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
from tests.support import KafkaClients

FRAMES = 400


def test_sigkill_and_restart_lose_nothing(
    settings: Settings,
    kafka_clients: KafkaClients,
    redis_client: redis.Redis,
    stream_models: dict[str, Path],
    serve: Callable[..., ServeProcess],
) -> None:
    model = stream_models["a"]
    threshold = middle_threshold(offline_scores(model))
    first = serve(model, "first", threshold=threshold, max_batch=8)
    first.wait_for(lambda _: bool(first.assigned()), "the worker to get partitions")
    frames = produce(kafka_clients.producer(), settings.kafka.topics.frames, make_frames(FRAMES))
    scores_topic = settings.kafka.topics.scores
    read_topic(settings, scores_topic, lambda r: len(distinct_ids(r)) >= FRAMES // 3, "a third of the scores")
    first.stop(signal.SIGKILL)
    assert first.proc.returncode == -signal.SIGKILL

    group = settings.kafka.group_id
    committed = {
        tp.partition: meta.offset
        for tp, meta in kafka_clients.admin().list_group_offsets({group: None})[group].items()
    }
    assert sum(committed.values()) < FRAMES, "the worker had finished before it was killed"

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
    queued = review_frame_ids(redis_client, settings.redis.key_prefix)
    assert len(queued) == len(set(queued)), "an operator would see a frame twice"
    assert set(queued) == flagged
