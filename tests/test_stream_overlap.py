"""The loop keeps polling while the model thread scores, and a rebalance meanwhile loses nothing.

The worker runs in this process with a backend whose first batch waits for the test. While it
waits, a second member joins the group and takes partitions: the worker must take part in that
rebalance from its poll (a loop that blocked in inference would hold the group up), must not
publish the frames of the batch whose partitions moved, and must not commit them. Once the second
member leaves, the worker gets them back and scores every frame exactly once.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from agad_stream.config import Settings
from agad_stream.inference import Backend, Prediction, load_backend
from agad_stream.stream.clients import connect
from agad_stream.stream.worker import Worker
from tests.stream_support import committed, make_frames, produce, read_all, read_topic
from tests.support import WAIT_S, KafkaClients

FRAMES = 16


class Intruder(threading.Thread):
    """A second member of the group that holds the partitions it is given, polling as a live member
    does (a member that stops polling stalls the group's next rebalance), committing nothing."""

    def __init__(self, kafka_clients: KafkaClients, topic: str, group: str) -> None:
        super().__init__()
        self.consumer = kafka_clients.consumer(topic, group_id=group)
        self.consumer.topics()  # metadata before joining, as the worker does (see Worker.run)
        self.assigned: set[int] = set()
        self.leave = threading.Event()

    def run(self) -> None:
        while not self.leave.is_set():
            self.consumer.poll(timeout_ms=100)
            self.assigned = {tp.partition for tp in self.consumer.assignment()}
        self.consumer.close(autocommit=False)


class HeldFirstBatch:
    """The wrapped backend, except that its first call waits until ``release`` is set; it notes the
    size of every batch, and every batch another lane scored meanwhile."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name, self.card, self.details, self.lanes = inner.name, inner.card, inner.details, inner.lanes
        self.started, self.release = threading.Event(), threading.Event()
        self.sizes: list[int] = []
        self.scored_while_held = 0
        self.lock = threading.Lock()

    def predict(self, batch: np.ndarray, *, heatmaps: bool = True) -> Prediction:
        with self.lock:
            first = not self.started.is_set()
            self.sizes.append(len(batch))
            if first:
                self.started.set()
            elif not self.release.is_set():
                self.scored_while_held += 1
        if first:
            assert self.release.wait(WAIT_S), "the test never released the first batch"
        return self.inner.predict(batch, heatmaps=heatmaps)


def start_worker(
    settings: Settings, model: Path, backend: HeldFirstBatch, **scorer: float
) -> tuple[Worker, threading.Thread]:
    """A worker serving ``backend`` with the ``scorer`` settings changed (metrics off), on a thread."""
    update = {**scorer, "metrics_port": 0}
    served = settings.model_copy(update={"scorer": settings.scorer.model_copy(update=update)})
    worker = Worker(served, model, backend, lambda _: backend, connect(served))
    thread = threading.Thread(target=worker.run)
    thread.start()
    return worker, thread


def test_a_rebalance_while_a_batch_is_scored_publishes_none_of_its_lost_frames(
    settings: Settings, kafka_clients: KafkaClients, stream_models: dict[str, Path]
) -> None:
    model = stream_models["a"]
    backend = HeldFirstBatch(load_backend(model, "onnxruntime"))
    # Room for more than the frames, and time to poll them all: they make one batch, and no
    # second batch is ready to wait for the first while it is held.
    group, topics = settings.kafka.group_id, settings.kafka.topics
    placed = produce(kafka_clients.producer(), topics.frames, make_frames(FRAMES))
    worker, thread = start_worker(settings, model, backend, max_batch=4 * FRAMES, max_wait_ms=3000.0)
    try:
        assert backend.started.wait(WAIT_S), "the worker never scored a batch"
        assert backend.sizes == [FRAMES]
        intruder = Intruder(kafka_clients, topics.frames, group)
        intruder.start()
        deadline = time.monotonic() + WAIT_S
        while not intruder.assigned and time.monotonic() < deadline:
            time.sleep(0.1)
        lost = intruder.assigned
        assert lost and len(lost) < 4, "the worker did not share its partitions while scoring"
        backend.release.set()

        kept = [f for f in placed if f.partition not in lost]
        scores = read_topic(settings, topics.scores, lambda r: len(r) >= len(kept), "the kept frames' scores")
        scored = {json.loads(r.value)["frame_id"] for r in scores}
        assert scored == {f.frame_id for f in kept}, "frames of partitions that moved were published"
        ends = {f.partition: f.offset + 1 for f in kept}
        while committed(kafka_clients, group) != ends and time.monotonic() < deadline:
            time.sleep(0.2)
        assert committed(kafka_clients, group) == ends, "offsets of partitions that moved were committed"

        intruder.leave.set()
        intruder.join(WAIT_S)
        scores = read_topic(settings, topics.scores, lambda r: len(r) >= FRAMES, "every frame's score")
    finally:
        backend.release.set()
        worker.stopping.set()
        thread.join(WAIT_S)
    assert not thread.is_alive()
    times = Counter(json.loads(r.value)["frame_id"] for r in scores)
    assert times == Counter(f.frame_id for f in placed), "a frame was scored twice or not at all"


def test_two_lanes_score_other_batches_meanwhile_hold_no_more_and_deliver_in_order(
    settings: Settings, kafka_clients: KafkaClients, stream_models: dict[str, Path]
) -> None:
    model = stream_models["a"]
    backend = HeldFirstBatch(load_backend(model, "onnxruntime", lanes=2, threads=1))
    assert backend.lanes == 2
    # Batches of at most 4 that close at once, eight or more: the first is held; a lane holds a batch and
    # the next, so the other lane scores the second, third and fourth, and the rest wait in Kafka.
    group, topics = settings.kafka.group_id, settings.kafka.topics
    placed = produce(kafka_clients.producer(), topics.frames, make_frames(2 * FRAMES))
    worker, thread = start_worker(settings, model, backend, max_batch=4, max_wait_ms=0.0)
    try:
        deadline = time.monotonic() + WAIT_S
        while backend.scored_while_held < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # time to score more, publish and commit, were the worker to pass the held batch
        assert backend.scored_while_held == 3, "not two batches a lane while the first was held"
        assert read_all(settings, topics.scores) == [], (
            "a batch polled after the held one was delivered first"
        )
        assert committed(kafka_clients, group) == {}, "offsets passed the held batch"
        backend.release.set()
        scores = read_topic(settings, topics.scores, lambda r: len(r) >= 2 * FRAMES, "every frame's score")
        ends = {
            p: max(f.offset for f in placed if f.partition == p) + 1 for p in {f.partition for f in placed}
        }
        while committed(kafka_clients, group) != ends and time.monotonic() < deadline:
            time.sleep(0.2)
        assert committed(kafka_clients, group) == ends
    finally:
        backend.release.set()
        worker.stopping.set()
        thread.join(WAIT_S)
    assert not thread.is_alive()
    times = Counter(json.loads(r.value)["frame_id"] for r in scores)
    assert times == Counter(f.frame_id for f in placed), "a frame was scored twice or not at all"


def test_a_batch_due_while_the_lane_is_busy_takes_the_frames_that_come_meanwhile(
    settings: Settings, kafka_clients: KafkaClients, stream_models: dict[str, Path]
) -> None:
    model = stream_models["a"]
    backend = HeldFirstBatch(load_backend(model, "onnxruntime"))
    topics = settings.kafka.topics
    producer = kafka_clients.producer()
    placed = produce(producer, topics.frames, make_frames(4))
    worker, thread = start_worker(settings, model, backend, max_batch=4 * FRAMES, max_wait_ms=50.0)
    try:
        assert backend.started.wait(WAIT_S), "the worker never scored a batch"
        for start in (4, 8, 12):  # each group comes after the one before has used up its wait
            placed += produce(producer, topics.frames, make_frames(4, start=start))
            time.sleep(0.25)
        backend.release.set()
        scores = read_topic(settings, topics.scores, lambda r: len(r) >= len(placed), "every frame's score")
    finally:
        backend.release.set()
        worker.stopping.set()
        thread.join(WAIT_S)
    assert not thread.is_alive()
    assert backend.sizes == [4, 12], (
        f"batches of {backend.sizes}: the frames that came while the lane was busy did not make one batch"
    )
    assert Counter(json.loads(r.value)["frame_id"] for r in scores) == Counter(f.frame_id for f in placed)
