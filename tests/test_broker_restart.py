"""Stop the real broker, start it again with `agad services up`: messages and group offsets survive."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import pytest
from kafka import KafkaConsumer
from kafka.structs import OffsetAndMetadata, TopicPartition

from agad_stream.config import Settings
from deploy.services import manager
from deploy.services.kafka import KafkaService
from tests.support import WAIT_S, KafkaClients, Services

MESSAGES = 40
PROCESSED_BEFORE_RESTART = 15


def poll_until(
    consumer: KafkaConsumer, enough: Callable[[list[tuple[int, int, bytes]]], bool], what: str
) -> list[tuple[int, int, bytes]]:
    """Poll until ``enough(records)``; records are (partition, offset, value) in arrival order."""
    records: list[tuple[int, int, bytes]] = []
    deadline = time.monotonic() + WAIT_S
    while not enough(records):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {WAIT_S:.0f} s waiting for {what}; got {len(records)}")
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend((r.partition, r.offset, r.value) for r in batch)
    return records


def test_restart_keeps_messages_and_committed_offsets(
    services: Services,
    settings: Settings,
    kafka_clients: KafkaClients,
    agad: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    pid_before = services.agad_managed("kafka")
    if pid_before is None:
        pytest.skip(
            f"the broker at {settings.kafka.bootstrap_servers} was not started by agad in "
            f"{services.local.state_dir}; this test only stops and restarts a broker agad manages"
        )
    topic = settings.kafka.topics.frames
    group = settings.kafka.group_id
    partitions = [TopicPartition(topic, p) for p in range(4)]

    producer = kafka_clients.producer()
    futures = [
        producer.send(topic, key=f"cam-{i % 4}".encode(), value=f"message-{i:03d}".encode())
        for i in range(MESSAGES)
    ]
    producer.flush()
    produced = {f"message-{i:03d}".encode(): future.get(timeout=WAIT_S) for i, future in enumerate(futures)}
    producer.close(timeout=10)

    # Process part of the messages and commit exactly what was processed.
    consumer = kafka_clients.consumer(topic, group_id=group, max_poll_records=5)
    fetched = poll_until(consumer, lambda r: len(r) >= PROCESSED_BEFORE_RESTART, "the first messages")
    processed = fetched[:PROCESSED_BEFORE_RESTART]  # the rest of the batch is dropped, uncommitted
    offsets: dict[TopicPartition, OffsetAndMetadata] = {}
    for partition, offset, _ in processed:
        offsets[TopicPartition(topic, partition)] = OffsetAndMetadata(offset + 1, "", -1)
    consumer.commit(offsets)
    consumer.close(autocommit=False)
    committed = kafka_clients.admin().list_group_offsets({group: None})[group]
    assert {tp: meta.offset for tp, meta in committed.items()} == {tp: m.offset for tp, m in offsets.items()}

    broker = KafkaService(services.local)
    manager.down(services.local, "kafka")
    try:
        assert broker.pid() is None and not broker.healthy(), "the broker is still up after `down`"
        result = agad("services", "up", env=services.env(), timeout=WAIT_S + 60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "started: kafka" in result.stdout
        assert broker.pid() not in (None, pid_before)
        assert broker.healthy()
    finally:
        if broker.pid() is None:  # the restart failed: bring the broker back for the other tests
            manager.up(services.local, "kafka")

    # Every message produced before the restart is still there, unchanged.
    reader = kafka_clients.consumer(group_id=None)
    reader.assign(partitions)
    reader.seek_to_beginning(*partitions)
    everything = poll_until(reader, lambda r: len(r) >= MESSAGES, "the messages produced before the restart")
    assert sorted(value for _, _, value in everything) == sorted(produced)
    for partition, offset, value in everything:
        assert (produced[value].partition, produced[value].offset) == (partition, offset)

    # The group resumes from its committed offsets: it reads exactly the messages not yet processed.
    processed_values = {value for _, _, value in processed}
    rest = set(produced) - processed_values
    resumed = kafka_clients.consumer(topic, group_id=group)
    remainder = poll_until(resumed, lambda r: len(r) >= len(rest), "the group to resume")
    values = [value for _, _, value in remainder]
    assert not processed_values & set(values), "the group re-read messages it had committed"
    assert sorted(values) == sorted(rest)
    resumed.commit()
    end = resumed.end_offsets(partitions)
    assert {tp: resumed.committed(tp) for tp in partitions} == end
