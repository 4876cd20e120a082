"""Micro-batching with a latency budget: a batch closes at ``max_batch`` items or ``max_wait_ms``.

The clock starts at the batch's first item, so a frame waits at most ``max_wait_ms`` for company
however long the stream was idle before it. The worker asks :meth:`Batcher.poll_budget` how many
records and how long it may wait in its next ``consumer.poll``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class Batcher(Generic[T]):
    """Collects items until the batch is full or its first item has waited ``max_wait_ms``."""

    def __init__(
        self, max_batch: int, max_wait_ms: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError("max_batch must be at least 1 and max_wait_ms at least 0")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self._clock = clock
        self._items: list[T] = []
        self._started = 0.0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, items: Iterable[T]) -> None:
        for item in items:
            if not self._items:
                self._started = self._clock()
            self._items.append(item)

    def full(self) -> bool:
        return len(self._items) >= self.max_batch

    def ready(self) -> bool:
        """True when the batch should close: full, or its oldest item has used up the budget."""
        if not self._items:
            return False
        return self.full() or self._clock() - self._started >= self.max_wait_s

    def poll_budget(self, longest_wait_ms: float) -> tuple[int, float]:
        """(records still wanted, ms to wait for them): what is left of the batch's budget, and never
        more than ``longest_wait_ms``, so that a long budget still lets the worker act on a stop
        signal or a rebalance as soon as an idle one would."""
        if not self._items:
            return self.max_batch, longest_wait_ms
        left_s = self.max_wait_s - (self._clock() - self._started)
        return self.max_batch - len(self._items), min(max(left_s * 1000.0, 0.0), longest_wait_ms)

    def discard(self, unwanted: Callable[[T], bool]) -> int:
        """Drop the items ``unwanted`` picks (a rebalance took their partitions); returns how many."""
        kept = [item for item in self._items if not unwanted(item)]
        dropped = len(self._items) - len(kept)
        self._items = kept
        return dropped

    def take(self) -> list[T]:
        """The collected items; the batcher starts empty again."""
        items, self._items = self._items, []
        return items
