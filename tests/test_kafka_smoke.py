"""Smoke tests against the real broker and Redis server: the frames contract and the review stream."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import cv2
import numpy as np
import redis
from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import TopicPartition

from agad_stream.config import Settings
from tests.support import WAIT_S, KafkaClients

FRAMES = 200
PARTITIONS = 4
CAMERAS = [f"cam-{index:02d}" for index in range(8)]


def jpeg_frame(index: int) -> bytes:
    """A small, distinct colour image encoded as JPEG."""
    rng = np.random.default_rng(index)
    image = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
    cv2.putText(image, str(index % 100), (2, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return encoded.tobytes()


def frame_headers(frame_id: str, camera_id: str, ts_ms: int) -> list[tuple[str, bytes]]:
    """The headers of DESIGN.md's frames contract."""
    return [
        ("frame_id", frame_id.encode()),
        ("camera_id", camera_id.encode()),
        ("ts_ms", str(ts_ms).encode()),
        ("content_type", b"image/jpeg"),
    ]


@dataclass
class Member:
    """One consumer of the group in its own thread: poll, process, then commit what it processed."""

    name: str
    consumer: KafkaConsumer
    received: list[ConsumerRecord] = field(default_factory=list)
    assignment: frozenset[TopicPartition] = frozenset()
    error: BaseException | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                batches = self.consumer.poll(timeout_ms=200)
                for records in batches.values():
                    self.received.extend(records)  # "processing"
                if batches:
                    self.consumer.commit()  # only after processing: at-least-once
                self.assignment = frozenset(self.consumer.assignment())
        except BaseException as exc:  # surfaced by the test thread
            self.error = exc
        finally:
            self.consumer.close(autocommit=False)


def wait_for(condition: object, what: str, members: list[Member]) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for member in members:
            if member.error is not None:
                raise AssertionError(f"consumer {member.name} failed") from member.error
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {WAIT_S:.0f} s waiting for {what}")


def test_frames_reach_a_two_member_group_exactly_once(
    settings: Settings, kafka_clients: KafkaClients
) -> None:
    topic = settings.kafka.topics.frames
    admin = kafka_clients.admin()
    assert admin.describe_cluster()["brokers"], "no broker answered a metadata request"
    (described,) = admin.describe_topics([topic])
    assert len(described["partitions"]) == PARTITIONS

    members = [
        Member(
            name,
            kafka_clients.consumer(
                topic, group_id=settings.kafka.group_id, client_id=f"smoke-{name}", heartbeat_interval_ms=500
            ),
        )
        for name in ("a", "b")
    ]
    for member in members:
        # The topic's metadata before joining, as the scorer fetches it (stream/worker.py): a leader
        # that joins without it assigns nothing and only notices at the next metadata refresh.
        member.consumer.topics()
    threads = [threading.Thread(target=member.run, name=f"consumer-{member.name}") for member in members]
    for thread in threads:
        thread.start()
    try:
        everything = {TopicPartition(topic, p) for p in range(PARTITIONS)}

        def both_hold_partitions() -> bool:
            a, b = (member.assignment for member in members)
            return bool(a) and bool(b) and not (a & b) and a | b == everything

        wait_for(both_hold_partitions, "both group members to hold partitions", members)

        producer = kafka_clients.producer()
        sent: dict[str, tuple[str, bytes, list[tuple[str, bytes]]]] = {}
        futures = []
        for index in range(FRAMES):
            camera = CAMERAS[index % len(CAMERAS)]
            frame_id = f"{camera}-{index:04d}"
            value = jpeg_frame(index)
            headers = frame_headers(frame_id, camera, 1_700_000_000_000 + index)
            sent[frame_id] = (camera, value, headers)
            futures.append(producer.send(topic, key=camera.encode(), value=value, headers=headers))
        producer.flush()
        partitions_used = {future.get(timeout=WAIT_S).partition for future in futures}
        assert partitions_used == set(range(PARTITIONS)), "the camera keys should spread over every partition"

        def all_arrived() -> bool:
            return sum(len(member.received) for member in members) >= FRAMES

        wait_for(all_arrived, f"{FRAMES} frames to arrive", members)
        # Everything consumed is committed before a member reports its batch, so the group's
        # committed offsets must reach the end of every partition.
        end_offsets = kafka_clients.consumer().end_offsets(list(everything))

        def committed_to_the_end() -> bool:
            committed = admin.list_group_offsets({settings.kafka.group_id: None})[settings.kafka.group_id]
            return all(
                committed.get(tp) is not None and committed[tp].offset == end
                for tp, end in end_offsets.items()
            )

        wait_for(committed_to_the_end, "the group's commits to reach the end offsets", members)
    finally:
        for member in members:
            member.stop.set()
        for thread in threads:
            thread.join(timeout=WAIT_S)
    for member in members:
        assert member.error is None, f"consumer {member.name} failed: {member.error!r}"

    received = [record for member in members for record in member.received]
    frame_ids = [dict(record.headers)["frame_id"].decode() for record in received]
    assert len(frame_ids) == FRAMES, "a frame arrived more than once"
    assert set(frame_ids) == set(sent), "a frame is missing"
    for member in members:
        assert member.received, f"member {member.name} received nothing"
        assert {TopicPartition(r.topic, r.partition) for r in member.received} <= member.assignment

    per_camera: dict[str, list[int]] = defaultdict(list)
    for record in received:
        headers = dict(record.headers)
        camera, value, sent_headers = sent[headers["frame_id"].decode()]
        assert record.key == camera.encode()
        assert record.headers == sent_headers, "headers changed on the way"
        assert record.value == value
        image = cv2.imdecode(np.frombuffer(record.value, dtype=np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape == (24, 32, 3)
        per_camera[camera].append(int(headers["ts_ms"]))
    for camera, stamps in per_camera.items():
        assert stamps == sorted(stamps), f"frames of {camera} arrived out of order"


def test_redis_stream_round_trip(settings: Settings, redis_client: redis.Redis) -> None:
    stream = settings.redis.key_prefix + "review"
    group = "reviewers"
    items = [{"frame_id": f"cam-01-{index:04d}", "score": f"{index / 10:.1f}"} for index in range(5)]
    ids = [redis_client.xadd(stream, item) for item in items]
    redis_client.xgroup_create(stream, group, id="0")

    reply = redis_client.xreadgroup(group, "alice", {stream: ">"}, count=10, block=5000)
    entries = reply[stream][0] if isinstance(reply, dict) else dict(reply)[stream]
    assert [entry_id for entry_id, _ in entries] == ids
    assert [fields for _, fields in entries] == items
    assert redis_client.xpending(stream, group)["pending"] == len(items)

    assert redis_client.xack(stream, group, *ids) == len(items)
    assert redis_client.xpending(stream, group)["pending"] == 0
    # Nothing is left to re-deliver to alice either.
    history = redis_client.xreadgroup(group, "alice", {stream: "0"}, count=10)
    assert all(not messages for _, messages in (history.items() if isinstance(history, dict) else history))
