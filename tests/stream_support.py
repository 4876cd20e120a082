"""Helpers of the streaming scorer tests: real `agad serve` processes, frames in, scores out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from agad_stream.config import ENV_PREFIX, Settings, routing_env
from agad_stream.inference import load_backend
from agad_stream.preprocess import prepare_image, to_model_input
from agad_stream.stream.simulator import frame_headers
from tests.support import WAIT_S, KafkaClients, services_env

CAMERAS = ("cam-00", "cam-01", "cam-02", "cam-03")  # their keys hash to the 4 partitions 0, 3, 2, 1
DISTINCT_IMAGES = 64


@dataclass(frozen=True)
class SentFrame:
    frame_id: str
    camera_id: str
    seq: int
    value: bytes
    image_index: int
    partition: int = -1
    offset: int = -1


def frame_image(index: int) -> np.ndarray:
    """One of DISTINCT_IMAGES grey 40x48 images: a blob over noise, different per index."""
    index %= DISTINCT_IMAGES
    rng = np.random.default_rng(index)
    image = rng.normal(120, 25 + index % 7 * 8, (40, 48)).clip(0, 255).astype(np.uint8)
    cv2.circle(image, (int(rng.integers(8, 40)), int(rng.integers(8, 32))), int(rng.integers(3, 12)), 250, -1)
    return image[:, :, None]


def jpeg(index: int) -> bytes:
    ok, encoded = cv2.imencode(".jpg", frame_image(index))
    assert ok
    return encoded.tobytes()


def offline_scores(model_dir: Path) -> np.ndarray:
    """The score of each of the DISTINCT_IMAGES JPEG frames, computed in this process."""
    backend = load_backend(model_dir, "onnxruntime")
    size, channels = backend.card.input.image_size, backend.card.input.channels
    images = [
        prepare_image(jpeg(i), "image/jpeg", image_size=size, channels=channels)
        for i in range(DISTINCT_IMAGES)
    ]
    scores, _ = backend.predict(to_model_input(np.stack(images)), heatmaps=False)
    return scores.astype(np.float64)


def middle_threshold(scores: np.ndarray) -> float:
    """A threshold halfway between the two middle scores: about half are flagged, none is a near tie."""
    ordered = np.sort(scores)
    middle = len(ordered) // 2
    return float((ordered[middle - 1] + ordered[middle]) / 2)


def produce(producer: KafkaProducer, topic: str, frames: Iterable[SentFrame]) -> list[SentFrame]:
    """Send frames with the contract's headers; returns them with their partition and offset."""
    futures = []
    for frame in frames:
        headers = frame_headers(frame.frame_id, frame.camera_id, 1_700_000_000_000 + frame.seq, "image/jpeg")
        futures.append(
            (frame, producer.send(topic, key=frame.camera_id.encode(), value=frame.value, headers=headers))
        )
    producer.flush()
    placed = []
    for frame, future in futures:
        meta = future.get(timeout=WAIT_S)
        placed.append(SentFrame(**{**frame.__dict__, "partition": meta.partition, "offset": meta.offset}))
    return placed


def committed(kafka_clients: KafkaClients, group: str) -> dict[int, int]:
    """The offsets ``group`` has committed, by partition (partitions without a commit are absent)."""
    offsets = kafka_clients.admin().list_group_offsets({group: None})[group]
    return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def make_frames(count: int, start: int = 0, prefix: str = "f") -> list[SentFrame]:
    """``count`` frames round-robin over CAMERAS; seq counts per camera from ``start``."""
    frames = []
    for n in range(start, start + count):
        camera = CAMERAS[n % len(CAMERAS)]
        seq = n // len(CAMERAS)
        frames.append(SentFrame(f"{prefix}-{camera}-{seq:05d}", camera, seq, jpeg(n), n % DISTINCT_IMAGES))
    return frames


def worker_env(settings: Settings, **scorer: Any) -> dict[str, str]:
    """Environment for `agad serve` seeing this test's services, topics, group and key prefix."""
    env = {
        **services_env(settings),
        **routing_env(settings),
        "AGAD_KAFKA__PARTITIONS": str(settings.kafka.partitions),
        "AGAD_SCORER__BACKEND": "onnxruntime",
        "AGAD_SCORER__METRICS_PORT": "0",
        "AGAD_SCORER__SESSION_TIMEOUT_MS": "6000",
    }
    env.update({f"AGAD_SCORER__{name.upper()}": str(value) for name, value in scorer.items()})
    return env


class ServeProcess:
    """One `agad serve` subprocess with its log file."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path, cwd: Path) -> None:
        self.log = log
        clean = {k: v for k, v in os.environ.items() if not k.upper().startswith(ENV_PREFIX)}
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                command, env={**clean, **env}, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, condition: Callable[[str], bool], what: str, timeout: float = WAIT_S) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text()
            if condition(text):
                return text
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"agad serve exited ({self.proc.returncode}) before {what}:\n{text[-3000:]}"
                )
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}:\n{self.text()[-3000:]}")

    def wait_assigned(self) -> None:
        """Until the worker has partitions (its first assignment)."""
        self.wait_for(lambda _: bool(self.assigned()), f"{self.log.stem} to get partitions")

    def assigned(self) -> list[int]:
        """The partitions of the worker's latest assignment (empty before the first)."""
        lines = [line for line in self.text().splitlines() if "assigned partitions [" in line]
        if not lines:
            return []
        inside = lines[-1].rsplit("[", 1)[1].split("]")[0]
        return [int(p) for p in inside.split(",") if p.strip()]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


def topic_partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    """The partitions of ``topic``, in order."""
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


def read_topic(settings: Settings, topic: str, enough: Callable[[list[Any]], bool], what: str) -> list[Any]:
    """Every record of ``topic`` in per-partition order, polling until ``enough(records)``.

    A reader that gets nothing for READER_QUIET_S although the topic holds more than it has read
    starts again with a new consumer (and says so): the test is about the scorer, not the reader.
    On a timeout the message says how far the topic's partitions go, to tell which side stopped.
    """
    deadline = time.monotonic() + WAIT_S
    while True:
        records, complete = _read_once(settings, topic, enough, deadline)
        if complete:
            return records
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {WAIT_S:.0f} s waiting for {what}; got {len(records)} records, "
                f"the topic's partitions end at {_end_offsets(settings, topic)}"
            )
        print(f"reader of {topic}: nothing new for {READER_QUIET_S:.0f} s below the end; reading again")


READER_QUIET_S = 15.0


def _read_once(
    settings: Settings, topic: str, enough: Callable[[list[Any]], bool], deadline: float
) -> tuple[list[Any], bool]:
    """(records, True) when ``enough``; (records, False) at the deadline or when the reader is stuck."""
    consumer = KafkaConsumer(**settings.kafka.client_options(), enable_auto_commit=False)
    try:
        partitions = topic_partitions(consumer, topic)
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[Any] = []
        last_new = time.monotonic()
        while not enough(records):
            now = time.monotonic()
            if now > deadline:
                return records, False
            if now - last_new > READER_QUIET_S:
                last_new = now
                if sum(consumer.end_offsets(partitions).values()) > len(records):
                    return records, False
            for batch in consumer.poll(timeout_ms=300).values():
                records.extend(batch)
                last_new = time.monotonic()
        return records, True
    finally:
        consumer.close(autocommit=False)


def _end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(**settings.kafka.client_options(), enable_auto_commit=False)
    try:
        partitions = topic_partitions(consumer, topic)
        return {tp.partition: end for tp, end in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close(autocommit=False)


def read_all(settings: Settings, topic: str) -> list[Any]:
    """Every record of ``topic`` up to its current end."""
    end = sum(_end_offsets(settings, topic).values())
    return read_topic(settings, topic, lambda records: len(records) >= end, f"all {end} records of {topic}")


def scores_of(records: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(record.value) for record in records]


def distinct_ids(records: list[Any]) -> set[str]:
    return {json.loads(record.value)["frame_id"] for record in records}


def review_frame_ids(client: redis.Redis, prefix: str) -> list[str]:
    """frame_id of every entry of the review stream, in stream order (duplicates kept)."""
    return [fields["frame_id"] for _, fields in client.xrange(f"{prefix}review:pending")]
