"""Two `agad serve` workers in one group score 1,000 frames of 4 cameras: each exactly once, in order."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import redis

from agad_stream.config import Settings
from tests.stream_support import (
    CAMERAS,
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

FRAMES = 1000


def test_two_workers_score_every_frame_once(
    settings: Settings,
    kafka_clients: KafkaClients,
    redis_client: redis.Redis,
    stream_models: dict[str, Path],
    serve: Callable[..., ServeProcess],
) -> None:
    model = stream_models["a"]
    expected = offline_scores(model)
    threshold = middle_threshold(expected)
    # w1 scores on two ONNX Runtime lanes (two batches at once), w2 on one: both keep camera order.
    workers = [
        serve(model, name, threshold=threshold, max_batch=16, lanes=lanes)
        for name, lanes in (("w1", 2), ("w2", 1))
    ]
    for worker in workers:
        worker.wait_assigned()
    frames = produce(kafka_clients.producer(), settings.kafka.topics.frames, make_frames(FRAMES))
    assert {f.partition for f in frames} == {0, 1, 2, 3}, "the 4 cameras should use the 4 partitions"

    # Mid-stream, one worker is stopped: it finishes and commits its batch, the other takes over.
    scores_topic = settings.kafka.topics.scores
    read_topic(settings, scores_topic, lambda r: len(distinct_ids(r)) >= FRAMES // 3, "a third of the scores")
    assert workers[1].stop() == 0, workers[1].text()[-3000:]
    read_topic(settings, scores_topic, lambda r: len(distinct_ids(r)) >= FRAMES, "every frame's score")
    assert workers[0].stop() == 0, workers[0].text()[-3000:]

    records = read_all(settings, scores_topic)
    scores = [json.loads(record.value) for record in records]
    by_id = {s["frame_id"]: s for s in scores}
    assert len(scores) == FRAMES, f"{len(scores) - len(by_id)} duplicate score records"
    sent = {f.frame_id: f for f in frames}
    assert set(by_id) == set(sent)
    for worker in workers:
        summary = worker.text().rsplit("stopped: ", 1)[1]
        assert int(summary.split()[0]) > 0, f"{worker.log.stem} scored nothing"
    assert "'lanes': '2'" in workers[0].text() and "'lanes': '1'" in workers[1].text()

    # Each record is this frame's verdict from this model, keyed by camera.
    for record, score in zip(records, scores, strict=True):
        frame = sent[score["frame_id"]]
        assert record.key == frame.camera_id.encode()
        assert score["camera_id"] == frame.camera_id and score["ts_ms"] == 1_700_000_000_000 + frame.seq
        assert score["model_version"] == "stream-a" and score["threshold"] == threshold
        assert score["is_anomaly"] == (score["score"] >= threshold)
        np.testing.assert_allclose(score["score"], expected[frame.image_index], rtol=1e-4)

    # Per-camera order: a camera's scores appear in the order its frames were sent.
    per_camera: dict[str, list[int]] = defaultdict(list)
    for score in scores:
        per_camera[score["camera_id"]].append(sent[score["frame_id"]].seq)
    assert set(per_camera) == set(CAMERAS)
    for camera, seqs in per_camera.items():
        assert seqs == sorted(seqs), f"scores of {camera} out of order"

    # The review queue holds exactly the flagged frames, once each, with image and heat-map.
    flagged = {s["frame_id"] for s in scores if s["score"] >= threshold}
    assert 0 < len(flagged) < FRAMES
    queued = review_frame_ids(redis_client, settings.redis.key_prefix)
    assert len(queued) == len(set(queued)) and set(queued) == flagged
    binary = redis.Redis.from_url(settings.redis.url, **settings.redis.client_options())
    try:
        frame_id = sorted(flagged)[0]
        item = binary.hgetall(f"{settings.redis.key_prefix}review:item:{frame_id}")
    finally:
        binary.close()
    assert item[b"image"] == sent[frame_id].value and item[b"content_type"] == b"image/jpeg"
    assert float(item[b"score"]) == by_id[frame_id]["score"] and item[b"model_version"] == b"stream-a"
    assert item[b"camera_id"] == sent[frame_id].camera_id.encode()
    heatmap = cv2.imdecode(np.frombuffer(item[b"heatmap_png"], np.uint8), cv2.IMREAD_UNCHANGED)
    assert heatmap.shape == (32, 32) and heatmap.max() == 255


def test_rebalance_drops_the_filling_batch_unpublished(
    settings: Settings,
    kafka_clients: KafkaClients,
    stream_models: dict[str, Path],
    serve: Callable[..., ServeProcess],
) -> None:
    """A batch still filling when a second worker joins loses the frames of the partitions that
    moved, unpublished; their new owner scores them. The batch's time budget (a minute, the most
    the settings allow) is far longer than a worker takes to join, and it closes when w1 stops."""
    model = stream_models["a"]
    first = serve(model, "w1", max_batch=1000, max_wait_ms=60_000)
    first.wait_assigned()
    frames = produce(kafka_clients.producer(), settings.kafka.topics.frames, make_frames(40))
    second = serve(model, "w2")
    first.wait_for(lambda text: "rebalance: dropped 20 polled frames" in text, "w1 to drop its filling batch")
    moved = {f.frame_id for f in frames if f.partition not in first.assigned()}
    assert len(moved) == 20
    scores_topic = settings.kafka.topics.scores
    read_topic(settings, scores_topic, lambda r: distinct_ids(r) >= moved, "w2 to score the moved frames")
    assert all(json.loads(r.value)["frame_id"] in moved for r in read_all(settings, scores_topic)), (
        "w1 published part of its filling batch"
    )
    assert first.stop() == 0  # closes its batch: the frames of the partitions it kept
    assert second.stop() == 0
    scores = [json.loads(r.value)["frame_id"] for r in read_all(settings, scores_topic)]
    assert sorted(scores) == sorted(f.frame_id for f in frames), "a frame was lost or scored twice"
    for worker in (first, second):
        assert "stopped: 0 frames" not in worker.text(), f"{worker.log.stem} scored nothing"
