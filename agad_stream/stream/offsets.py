"""Offsets to commit: staged once a batch's outputs are stored, committed when the group lets us.

In the loop a commit is sent without waiting for the answer (:meth:`Offsets.commit_soon`): the
round trip would otherwise hold up every batch. A commit refused (a rebalance under way, the
coordinator away) is staged again, unless a newer one for that partition was sent since or the
partition has moved. Before leaving, :meth:`Offsets.commit` waits for the answer and re-sends what
is still unanswered. Offsets of a partition that a rebalance moved to another worker are dropped
unsent: its new owner starts from the last commit, so those frames are scored again, not skipped.
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
        self._sent: dict[TopicPartition, OffsetAndMetadata] = {}  # sent, not answered yet
        self._lag: dict[TopicPartition, int] = {}

    @property
    def pending(self) -> bool:
        """Offsets staged or sent without an answer yet."""
        return bool(self._staged or self._sent)

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
            self._sent.pop(tp, None)
            self._lag.pop(tp, None)

    def commit_soon(self) -> None:
        """Send what is staged; the answer comes in a later poll (see the module docstring)."""
        if not self._staged:
            return
        offsets, self._staged = self._staged, {}
        self._sent.update(offsets)
        try:
            self.consumer.commit_async(offsets, callback=self._answered)
        except KafkaError as exc:
            self._answered(offsets, exc)

    def commit(self) -> bool:
        """Commit what is staged or unanswered and wait; False when the group postponed it."""
        offsets = {**self._sent, **self._staged}
        if not offsets:
            return True
        try:
            self.consumer.commit(offsets, timeout_ms=int(SEND_WAIT_S * 1000))
        except KafkaError as exc:
            self._log_postponed(exc)
            return False
        self._committed(offsets)
        self._staged.clear()
        self._sent.clear()
        return True

    def _answered(self, offsets: dict[TopicPartition, OffsetAndMetadata], answer: Any) -> None:
        """The broker's answer to :meth:`commit_soon` (or the error that stopped it)."""
        latest = {tp: meta for tp, meta in offsets.items() if self._sent.get(tp) is meta}
        for tp in latest:
            del self._sent[tp]
        if not isinstance(answer, Exception):
            self._committed(latest)
            return
        self._log_postponed(answer)
        owned = self.consumer.assignment()
        for tp, meta in latest.items():
            if tp in owned and tp not in self._staged:
                self._staged[tp] = meta

    def _committed(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        for tp, meta in offsets.items():
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                self._lag[tp] = max(highwater - meta.offset, 0)

    @staticmethod
    def _log_postponed(exc: BaseException) -> None:
        if isinstance(exc, CommitFailedError | RebalanceInProgressError | KafkaTimeoutError):
            log.info("commit postponed to after the next poll: %s", type(exc).__name__)
        else:  # the coordinator is unreachable (the broker went away): retry later
            log.warning("commit postponed, the group coordinator is unreachable: %s", exc)
