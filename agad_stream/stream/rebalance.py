"""What a rebalance did, noted for the worker's loop.

kafka-python calls the listener on its IO thread, inside ``poll``, which must not block: the
listener only takes notes (partitions revoked and not assigned back are *lost*) and, while the
worker holds back its intake, pauses what it was newly assigned. A ``poll`` can return between the
revocation and the assignment; until the assignment comes, :attr:`Rebalances.under_way` says so,
and the worker publishes nothing, since it cannot yet tell which of its frames it still owns.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener

log = logging.getLogger(__name__)


class Rebalances(ConsumerRebalanceListener):
    """Partitions lost to other workers since the last :meth:`take_lost`; ``holding`` pauses new ones."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        self.consumer = consumer
        self.holding = False
        self.under_way = False  # partitions revoked, the new assignment not known yet
        self._revoked: set[TopicPartition] = set()  # in the rebalance under way
        self._lost: set[TopicPartition] = set()

    def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        self._revoked = set(revoked)
        self.under_way = True
        if revoked:
            log.info("rebalance: partitions %s revoked", sorted(tp.partition for tp in revoked))

    def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        self._lost |= self._revoked - set(assigned)
        self._revoked = set()
        self.under_way = False
        if self.holding and assigned:
            self.consumer.pause(*assigned)  # still holding back: take nothing new yet
        log.info("assigned partitions %s", sorted(tp.partition for tp in assigned))

    def take_lost(self) -> set[TopicPartition]:
        """The partitions lost since the last call."""
        lost, self._lost = self._lost, set()
        return lost
