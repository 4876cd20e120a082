"""Offsets to commit: staged once a batch's outputs are stored, committed when the group lets us.

A commit is refused while a rebalance is under way; the staged offsets then wait for the next poll.
Offsets of a partition that a rebalance moved to another worker are dropped unsent: its new owner
starts from the last commit, so those frames are scored again rather than skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import CommitFailedError, KafkaError, KafkaTimeoutError, RebalanceInProgressError
from kafka.structs import OffsetAndMetadata

from agad_stream.stream.delivery import SEND_WAIT_S

log = logging.getLogger(__name__)


class Offsets:
    """The consumer's staged, not yet committed, offsets and the lag seen at the last commit."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        self.consumer = consumer
        self._staged: dict[TopicPartition, OffsetAndMetadata] = {}
        self._lag: dict[TopicPartition, int] = {}

    @property
    def pending(self) -> bool:
        return bool(self._staged)

    @property
    def lag(self) -> int:
        return sum(self._lag.values())

    def stage(self, records: Iterable[Any]) -> None:
        """Past ``records`` (ConsumerRecords whose outputs are stored)."""
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            if tp not in self._staged or self._staged[tp].offset <= record.offset:
                self._staged[tp] = OffsetAndMetadata(record.offset + 1, "", -1)

    def forget(self, partitions: set[TopicPartition]) -> None:
        """Drop what is staged for ``partitions``, which now belong to another worker."""
        for tp in partitions & set(self._staged):
            del self._staged[tp]
            log.warning(
                "partition %d moved before its commit; its new owner scores its last frames again",
                tp.partition,
            )
        for tp in partitions:
            self._lag.pop(tp, None)

    def commit(self) -> bool:
        """Commit what is staged; False when the group postponed it to after the next poll."""
        if not self._staged:
            return True
        try:
            self.consumer.commit(dict(self._staged), timeout_ms=int(SEND_WAIT_S * 1000))
        except (CommitFailedError, RebalanceInProgressError, KafkaTimeoutError) as exc:
            log.info("commit postponed to after the next poll: %s", type(exc).__name__)
            return False
        except KafkaError as exc:  # the coordinator is unreachable (the broker went away): retry later
            log.warning("commit postponed, the group coordinator is unreachable: %s", exc)
            return False
        for tp, meta in self._staged.items():
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                self._lag[tp] = max(highwater - meta.offset, 0)
        self._staged.clear()
        return True
