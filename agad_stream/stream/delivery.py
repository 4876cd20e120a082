"""Storing a batch's outputs: records acknowledged by the broker (acks=all), review items by Redis.

:class:`Delivery` makes one attempt at everything still pending and keeps what failed for the
next; the worker decides how long to wait between attempts and what to do meanwhile. A record
whose send failed for good is sent again on the next attempt; one still in flight is waited for.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import redis
from kafka import KafkaProducer
from kafka.errors import KafkaError

from agad_stream.review.queue import ReviewItem, ReviewQueue
from agad_stream.stream.route import OutRecord, Routed

log = logging.getLogger(__name__)

SEND_WAIT_S = 30.0
"""How long one attempt waits for the broker to acknowledge a batch's records."""


@dataclass
class InFlight:
    """A record and its send's future (None: not sent yet, or to be sent again)."""

    record: OutRecord
    future: Any = None


@dataclass
class Pending:
    """A batch's outputs that are not durable yet."""

    records: list[InFlight] = field(default_factory=list)
    reviews: list[ReviewItem] = field(default_factory=list)

    @classmethod
    def of(cls, routed: Routed) -> Pending:
        return cls([InFlight(record) for record in routed.records], list(routed.reviews))

    def empty(self) -> bool:
        return not self.records and not self.reviews


class Delivery:
    """Sends records with ``producer`` and queues review items in ``review``."""

    def __init__(self, producer: KafkaProducer, review: ReviewQueue) -> None:
        self.producer = producer
        self.review = review

    def attempt(self, pending: Pending) -> None:
        """One try at every pending output; what is stored leaves ``pending``."""
        try:
            added = self.review.add(pending.reviews)
            if added < len(pending.reviews):
                log.info(
                    "replay: %d of %d review items were queued before and are not queued again",
                    len(pending.reviews) - added,
                    len(pending.reviews),
                )
            pending.reviews = []
        except (redis.RedisError, OSError) as exc:
            log.warning("review queue unavailable: %s", exc)
        if not pending.records:
            return
        for entry in pending.records:
            if entry.future is None:
                record = entry.record
                try:
                    entry.future = self.producer.send(
                        record.topic, key=record.key, value=record.value, headers=record.headers
                    )
                except KafkaError as exc:
                    log.warning("cannot send to %s: %s", record.topic, exc)
                    break
        try:
            self.producer.flush(timeout=SEND_WAIT_S)
        except KafkaError as exc:
            log.warning("broker did not acknowledge the batch in %.0f s: %s", SEND_WAIT_S, exc)
        still = []
        for entry in pending.records:
            future = entry.future
            if future is not None and future.is_done and future.succeeded():
                continue
            if future is not None and future.is_done:
                log.warning("send to %s failed: %s", entry.record.topic, future.exception)
                entry.future = None  # failed for good: send it again
            still.append(entry)
        pending.records = still
