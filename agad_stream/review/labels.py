"""Label records: an operator's decision on the ``labels`` topic, the durable label store.

The contract (DESIGN.md): key = frame_id (compacted: the latest decision per frame wins and is
kept for good); value = the frame's original image bytes; headers = the frame's own (``frame_id``,
``camera_id``, ``ts_ms``, ``content_type``) plus ``label`` (``anomaly`` | ``normal``), ``defect``
(a name, or empty), ``reviewer``, ``decided_at`` (ISO 8601, UTC), ``model_version`` and ``score``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from agad_stream.config import KafkaSettings
from agad_stream.errors import AgadError

Label = Literal["anomaly", "normal"]
LABELS: Final = ("anomaly", "normal")
SEND_TIMEOUT_S: Final = 10.0
"""How long a decision waits for the broker before the page says it was not saved."""


@dataclass(frozen=True)
class LabelRecord:
    frame_id: str
    camera_id: str
    ts_ms: int
    content_type: str
    label: Label
    defect: str
    reviewer: str
    decided_at: str
    model_version: str
    score: float
    image: bytes
    offset: int = -1  # where it was read from the labels topic (-1: not read from it)

    def headers(self) -> list[tuple[str, bytes]]:
        values = {
            "frame_id": self.frame_id,
            "camera_id": self.camera_id,
            "ts_ms": str(self.ts_ms),
            "content_type": self.content_type,
            "label": self.label,
            "defect": self.defect,
            "reviewer": self.reviewer,
            "decided_at": self.decided_at,
            "model_version": self.model_version,
            "score": repr(float(self.score)),
        }
        return [(name, value.encode()) for name, value in values.items()]

    @classmethod
    def from_record(cls, record: Any) -> LabelRecord:
        """The label of a ConsumerRecord of the labels topic; AgadError when it is not one."""
        headers = {name: bytes(value or b"").decode(errors="replace") for name, value in record.headers or ()}
        try:
            label = headers["label"]
            if label not in LABELS:
                raise ValueError(f"label {label!r}")
            return cls(
                frame_id=headers.get("frame_id") or bytes(record.key).decode(),
                camera_id=headers.get("camera_id", ""),
                ts_ms=int(headers.get("ts_ms") or 0),
                content_type=headers.get("content_type", "application/octet-stream"),
                label=label,  # type: ignore[arg-type]
                defect=headers.get("defect", ""),
                reviewer=headers.get("reviewer", ""),
                decided_at=headers.get("decided_at", ""),
                model_version=headers.get("model_version", ""),
                score=float(headers.get("score") or "nan"),
                image=bytes(record.value or b""),
                offset=int(record.offset),
            )
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise AgadError(f"labels topic offset {record.offset} is not a label record ({exc})") from None


def decided_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def label_producer(kafka: KafkaSettings) -> KafkaProducer:
    """A producer whose send fails within seconds when the broker is away, rather than blocking."""
    return KafkaProducer(
        **kafka.client_options(),
        **kafka.producer_size_options(),
        acks="all",
        max_block_ms=int(SEND_TIMEOUT_S * 1000),
        request_timeout_ms=int(SEND_TIMEOUT_S * 1000),
        delivery_timeout_ms=int(SEND_TIMEOUT_S * 1000) + 1000,
    )


def publish(producer: KafkaProducer, topic: str, label: LabelRecord) -> None:
    """Store ``label``, waiting for every in-sync replica (acks=all); AgadError when the broker did
    not acknowledge it, so that the caller never reports it saved."""
    try:
        future = producer.send(topic, key=label.frame_id.encode(), value=label.image, headers=label.headers())
        future.get(timeout=SEND_TIMEOUT_S)
    except KafkaError as exc:
        raise AgadError(
            f"the label of {label.frame_id} was not saved: Kafka did not acknowledge it ({exc!r})"
        ) from None


@dataclass(frozen=True)
class LabelStore:
    """Every frame's latest decision read from the labels topic, and the end offset read to."""

    labels: dict[str, LabelRecord]
    end_offsets: dict[int, int]


def read_labels(kafka: KafkaSettings, timeout_s: float = 60.0) -> LabelStore:
    """The label store as it stands: the topic read from the beginning to its current end; per
    frame_id the record with the highest offset (compaction may not have removed the others yet)."""
    try:
        consumer = KafkaConsumer(
            **kafka.client_options(), **kafka.consumer_size_options(), enable_auto_commit=False
        )
    except KafkaError as exc:
        raise AgadError(
            f"cannot reach Kafka at {kafka.bootstrap_servers} to read the labels ({exc!r}); check "
            "AGAD_KAFKA__BOOTSTRAP_SERVERS"
        ) from None
    try:
        topic = kafka.topics.labels
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            raise AgadError(
                f"the labels topic {topic} (AGAD_KAFKA__TOPICS__LABELS) does not exist; create it with "
                "`agad topics create`"
            )
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        ends = {tp.partition: offset for tp, offset in consumer.end_offsets(assigned).items()}
        latest: dict[str, LabelRecord] = {}
        for record in _records_until(consumer, assigned, ends, timeout_s):
            if record.value is None:  # a tombstone: the frame's label was withdrawn
                latest.pop(bytes(record.key).decode(), None)
                continue
            label = LabelRecord.from_record(record)
            latest[label.frame_id] = replace(label, offset=record.offset)
        return LabelStore(latest, ends)
    except KafkaError as exc:
        raise AgadError(f"reading the labels topic failed: {exc!r}") from None
    finally:
        consumer.close(autocommit=False)


def _records_until(
    consumer: KafkaConsumer, assigned: list[TopicPartition], ends: dict[int, int], timeout_s: float
) -> Iterator[Any]:
    deadline = time.monotonic() + timeout_s
    while any(consumer.position(tp) < ends[tp.partition] for tp in assigned):
        if time.monotonic() > deadline:
            raise AgadError(
                f"reading the labels topic took longer than {timeout_s:.0f} s; is the broker healthy?"
            )
        for records in consumer.poll(timeout_ms=500).values():
            for record in records:
                if record.offset < ends[record.partition]:
                    yield record
