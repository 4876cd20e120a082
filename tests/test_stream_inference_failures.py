"""A frame that breaks the backend is dead-lettered; a backend that breaks on everything stops the worker.

Both against the real broker and Redis, with the worker in this process so that its backend can be
one that raises on a marked frame (a white image) or on every call.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from agad_stream.config import Settings
from agad_stream.errors import AgadError
from agad_stream.inference import Backend, Prediction, load_backend
from agad_stream.stream.clients import connect
from agad_stream.stream.isolation import BackendBroken, predict_isolating
from agad_stream.stream.worker import Worker
from tests.stream_support import committed, make_frames, produce, read_topic
from tests.support import WAIT_S, KafkaClients


class RaisesOnWhite:
    """The ONNX Runtime backend, except that a batch holding an all-white image raises."""

    def __init__(self, inner: Backend, always: bool = False) -> None:
        self.inner, self.always = inner, always
        self.name, self.card, self.details, self.lanes = inner.name, inner.card, inner.details, inner.lanes
        self.calls = 0

    def predict(self, batch: np.ndarray, *, heatmaps: bool = True) -> Prediction:
        self.calls += 1
        if self.always or bool((batch.reshape(len(batch), -1).min(axis=1) > 0.99).any()):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self.inner.predict(batch, heatmaps=heatmaps)


def white_jpeg() -> bytes:
    ok, encoded = cv2.imencode(".jpg", np.full((40, 48), 255, np.uint8))
    assert ok
    return encoded.tobytes()


def test_isolation_finds_the_frames_that_fail_alone() -> None:
    batch = np.zeros((7, 1, 4, 4), np.float32)
    batch[[2, 5]] = 1.0

    def predict(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if (images.reshape(len(images), -1).min(axis=1) > 0.99).any():
            raise ValueError("boom")
        return images.sum(axis=(1, 2, 3)), images[:, :1]

    found = predict_isolating(predict, batch, batch[:1])
    assert found.scored == [0, 1, 3, 4, 6] and sorted(found.failures) == [2, 5]
    assert found.failures[2] == "inference failed: ValueError: boom"
    assert found.scores.shape == (5,) and found.heatmaps.shape == (5, 1, 4, 4)
    with pytest.raises(BackendBroken, match="broken, not the frames"):
        predict_isolating(predict, batch, batch[2:3])  # the canary fails too


def test_a_frame_that_breaks_the_backend_is_dead_lettered(
    settings: Settings, kafka_clients: KafkaClients, stream_models: dict[str, Path]
) -> None:
    model = stream_models["a"]
    backend = RaisesOnWhite(load_backend(model, "onnxruntime"))
    scorer = settings.scorer.model_copy(update={"max_batch": 16, "max_wait_ms": 200.0, "metrics_port": 0})
    served = settings.model_copy(update={"scorer": scorer})
    worker = Worker(served, model, backend, lambda _: backend, connect(served))
    good = make_frames(30)
    white = [
        type(frame)(**{**frame.__dict__, "frame_id": f"white-{n}", "value": white_jpeg()})
        for n, frame in enumerate(make_frames(2, start=30))
    ]
    producer = kafka_clients.producer()
    placed = produce(producer, settings.kafka.topics.frames, [*good[:15], white[0], *good[15:], white[1]])
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        scores = read_topic(settings, settings.kafka.topics.scores, lambda r: len(r) >= 30, "30 scores")
        letters = read_topic(settings, settings.kafka.topics.dead_letter, lambda r: len(r) >= 2, "2 letters")
    finally:
        worker.stopping.set()
        thread.join(WAIT_S)
    assert not thread.is_alive()
    assert sorted(json.loads(r.value)["frame_id"] for r in scores) == sorted(f.frame_id for f in good)
    reasons = {dict(r.headers)["frame_id"].decode(): dict(r.headers)["error"].decode() for r in letters}
    assert set(reasons) == {"white-0", "white-1"}
    assert all(reason.startswith("inference failed: RuntimeError: CUDA error") for reason in reasons.values())
    ends: dict[int, int] = {}
    for frame in placed:
        ends[frame.partition] = max(ends.get(frame.partition, 0), frame.offset + 1)
    assert committed(kafka_clients, settings.kafka.group_id) == ends


def test_a_backend_that_fails_on_everything_stops_the_worker_uncommitted(
    settings: Settings, kafka_clients: KafkaClients, stream_models: dict[str, Path]
) -> None:
    model = stream_models["a"]
    backend = RaisesOnWhite(load_backend(model, "onnxruntime"), always=True)
    worker = Worker(settings, model, backend, lambda _: backend, connect(settings))
    produce(kafka_clients.producer(), settings.kafka.topics.frames, make_frames(8))
    with pytest.raises(AgadError, match="the model or its runtime is broken"):
        worker.run()
    assert backend.calls > 1
    assert committed(kafka_clients, settings.kafka.group_id) == {}
    consumer = kafka_clients.consumer(settings.kafka.topics.scores, settings.kafka.topics.dead_letter)
    assert not consumer.poll(timeout_ms=2000)
