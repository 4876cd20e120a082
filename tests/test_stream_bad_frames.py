"""Frames that cannot be scored go to the dead-letter topic with their reason; the worker keeps scoring."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from agad_stream.config import Settings
from agad_stream.stream.simulator import CORRUPTIONS, frame_headers
from tests.stream_support import ServeProcess, make_frames, produce, read_topic
from tests.support import WAIT_S, KafkaClients

BAD = 25
EXPECTED_REASON = {
    "truncated": "truncated image/jpeg",
    "empty": "empty image",
    "text": "cannot decode image/png",
    "tiny": "image too small: 1x1",
    "huge": "image too large: 100000x100000",
    "raw_mismatch": "raw shape mismatch",
    "missing_headers": "missing header camera_id, ts_ms",
    "unknown_type": "unknown content type 'video/h264'",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_metrics(port: int, until: str) -> str:
    """The worker's metrics once they contain ``until``: the counters move after the outputs are
    stored, a moment after a reader can see them."""
    deadline = time.monotonic() + WAIT_S
    while True:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        if until in text:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"the metrics never showed {until!r}:\n{text}")
        time.sleep(0.2)


def test_bad_frames_are_dead_lettered_with_reasons(
    settings: Settings,
    kafka_clients: KafkaClients,
    stream_models: dict[str, Path],
    serve: Callable[..., ServeProcess],
) -> None:
    assert set(EXPECTED_REASON) == set(CORRUPTIONS)
    port = free_port()
    worker = serve(stream_models["a"], "w1", metrics_port=port)
    worker.wait_assigned()

    producer = kafka_clients.producer()
    frames_topic = settings.kafka.topics.frames
    good = make_frames(60)
    kinds = sorted(CORRUPTIONS)
    bad: dict[str, tuple[str, bytes, list[tuple[str, bytes]]]] = {}
    for index in range(BAD):  # 25 bad frames, every kind at least 3 times, between good ones
        kind = kinds[index % len(kinds)]
        frame_id = f"bad-{index:02d}-{kind}"
        camera = f"cam-{index % 4:02d}"
        value, headers = CORRUPTIONS[kind](
            good[index].value, frame_headers(frame_id, camera, 1, "image/jpeg")
        )
        bad[frame_id] = (kind, value, headers)
        produce(producer, frames_topic, good[2 * index : 2 * index + 2])
        producer.send(frames_topic, key=camera.encode(), value=value, headers=headers)
    produce(producer, frames_topic, good[2 * BAD :])  # and good frames after the last bad one

    letters = read_topic(settings, settings.kafka.topics.dead_letter, lambda r: len(r) >= BAD, "dead letters")
    scores = read_topic(settings, settings.kafka.topics.scores, lambda r: len(r) >= len(good), "scores")
    metrics = read_metrics(port, until=f"agad_frames_scored_total {len(good)}.0")
    assert worker.stop() == 0 and worker.proc.returncode == 0

    reasons: dict[str, set[str]] = {kind: set() for kind in kinds}
    for letter in letters:
        headers = dict(letter.headers)
        frame_id = headers["frame_id"].decode()
        kind, value, sent_headers = bad.pop(frame_id)
        kept, added = letter.headers[: len(sent_headers)], letter.headers[len(sent_headers) :]
        assert letter.value == value and kept == sent_headers, "dead letter changed the frame"
        assert [name for name, _ in added] == ["error", "source_topic", "source_partition", "source_offset"]
        assert added[1][1].decode() == frames_topic
        reasons[kind].add(headers["error"].decode())
    assert not bad, f"not dead-lettered: {sorted(bad)}"
    for kind, found in reasons.items():
        assert len(found) == 1 and EXPECTED_REASON[kind] in next(iter(found)), (kind, found)
    assert len({next(iter(found)) for found in reasons.values()}) == len(kinds), "two kinds share a reason"

    assert sorted(json.loads(r.value)["frame_id"] for r in scores) == sorted(f.frame_id for f in good)
    assert "agad_frames_scored_total 60.0" in metrics
    assert f"agad_frames_dead_lettered_total {BAD}.0" in metrics
    assert 'agad_model_version{version="stream-a"} 1.0' in metrics
    assert "agad_inference_seconds_count" in metrics and "agad_end_to_end_seconds_count" in metrics
    # the path's profile: every decoded frame's fetch, every record's batch wait, each batch's steps
    assert 'agad_stage_seconds_count{stage="fetch"} 60.0' in metrics
    assert f'agad_stage_seconds_count{{stage="batch_wait"}} {60 + BAD}.0' in metrics
    batches = re.search(r"^agad_batch_size_count (\S+)$", metrics, re.M)
    assert batches is not None
    for step in ("decode", "deliver", "commit"):
        assert f'agad_stage_seconds_count{{stage="{step}"}} {batches[1]}' in metrics, step
