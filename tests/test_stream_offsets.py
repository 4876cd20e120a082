"""Commits sent without waiting (Offsets.commit_soon) reach the broker with a later poll.

Refused commits (a rebalance under way) are exercised by the rebalance tests of real workers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer

from agad_stream.config import Settings
from agad_stream.stream.offsets import Offsets
from tests.stream_support import committed, make_frames, produce
from tests.support import WAIT_S, KafkaClients


def joined(kafka_clients: KafkaClients, topic: str, group: str) -> KafkaConsumer:
    """A member of ``group`` holding every partition of ``topic``, its records polled."""
    consumer = kafka_clients.consumer(topic, group_id=group)
    deadline = time.monotonic() + WAIT_S
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(timeout_ms=200)
    assert consumer.assignment(), "the consumer got no partitions"
    return consumer


def test_a_commit_sent_without_waiting_arrives_with_the_next_poll(
    settings: Settings, kafka_clients: KafkaClients, make_topic: Callable[..., str]
) -> None:
    topic, group = make_topic(partitions=2), settings.kafka.group_id
    consumer = joined(kafka_clients, topic, group)
    produce(kafka_clients.producer(), topic, make_frames(6))
    records: list[Any] = []
    deadline = time.monotonic() + WAIT_S
    while len(records) < 6 and time.monotonic() < deadline:
        records += [r for polled in consumer.poll(timeout_ms=200).values() for r in polled]
    assert len(records) == 6, "the frames were not all polled"
    offsets = Offsets(consumer)
    offsets.stage(records)
    offsets.commit_soon()
    assert offsets.pending, "answered before any poll: the commit waited"
    while offsets.pending and time.monotonic() < deadline:
        consumer.poll(timeout_ms=100)  # the answer is read here
    assert not offsets.pending
    last = {r.partition: r.offset for r in sorted(records, key=lambda r: r.offset)}
    assert committed(kafka_clients, group) == {p: offset + 1 for p, offset in last.items()}
