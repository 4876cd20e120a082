"""The clients a scorer worker talks through, made from the settings (or by a test, its own way)."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from kafka import KafkaConsumer, KafkaProducer

from agad_stream.config import Settings
from agad_stream.connections import redis_client
from agad_stream.stream.delivery import SEND_WAIT_S

HEARTBEAT_MS = 1000
"""Longest interval between heartbeats (a third of the session timeout when that is shorter)."""

HOT_PATH_OPTIONS = {"metrics_enabled": False}
"""kafka-python's own client metrics cost a few sensor updates per request and record, and nothing
reads them: the worker exports its own (agad_stream.stream.metrics)."""


@dataclass
class Clients:
    """The frames consumer (in the scorers' group), the producer of outputs, and Redis."""

    consumer: KafkaConsumer
    producer: KafkaProducer
    redis: redis.Redis

    def close(self) -> None:
        """Leave the group and release the connections (idempotent)."""
        try:
            self.consumer.close(autocommit=False)
        finally:
            self.producer.close(timeout=10)
            self.redis.close()


def connect(settings: Settings) -> Clients:
    """Clients for a worker: manual commits, batches of at most ``max_batch``, acks from all replicas,
    and record sizes that carry whole frames (``AGAD_KAFKA__MAX_FRAME_BYTES``)."""
    kafka, scorer = settings.kafka, settings.scorer
    options = kafka.client_options()
    consumer = KafkaConsumer(
        **options,
        **HOT_PATH_OPTIONS,
        **kafka.consumer_size_options(),
        group_id=kafka.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=scorer.max_batch,
        session_timeout_ms=scorer.session_timeout_ms,
        # Members learn of a rebalance on their next heartbeat; every commit waits until then.
        heartbeat_interval_ms=min(max(scorer.session_timeout_ms // 3, 100), HEARTBEAT_MS),
    )
    producer = KafkaProducer(
        **options,
        **HOT_PATH_OPTIONS,
        **kafka.producer_size_options(),  # dead letters carry whole frames
        acks="all",
        linger_ms=2,
        delivery_timeout_ms=int(SEND_WAIT_S * 1000) + 5000,
    )
    return Clients(consumer, producer, redis_client(settings, check=False))
