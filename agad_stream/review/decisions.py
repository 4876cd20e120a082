"""An operator's decision, from the review queue to the label store and back, in a safe order.

1. the operator must hold the item (a claim of theirs is renewed; another's is refused);
2. the label record goes to the labels topic and the broker acknowledges it (acks=all);
3. only then the item leaves the queue.

If Kafka refuses, nothing else happens: the item stays the operator's, pending, and the same
decision can be sent again. Deciding a frame twice is harmless: the label store keeps the latest.
The web page and ``agad review decide`` both decide through :class:`Reviewing`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from kafka import KafkaProducer
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from agad_stream.errors import AgadError
from agad_stream.review.labels import LABELS, LabelRecord, decided_now, publish
from agad_stream.review.store import Item, ReviewStore

SKIP = "skip"


class TakenError(AgadError):
    """Another operator holds the item."""


class GoneError(AgadError):
    """The item is no longer in the queue (decided, expired, or never queued)."""


class NotSavedError(AgadError):
    """The label store did not acknowledge the decision; the item stays pending."""


@dataclass(frozen=True)
class Outcome:
    frame_id: str
    label: str  # anomaly, normal or skip
    defect: str
    seconds_since_flagged: float


class ReviewMetrics:
    """The review page's metrics (served on its own port at /metrics)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.pending = Gauge("agad_review_pending", "items waiting in the review queue", registry=r)
        self.claimed = Gauge("agad_review_claimed", "items an operator has open", registry=r)
        self.decided = Counter("agad_review_decided", "decisions stored, by label", ["label"], registry=r)
        self.expired = Counter(
            "agad_review_expired", "items that left the queue undecided, too old", registry=r
        )
        self.not_saved = Counter(
            "agad_review_not_saved", "decisions the label store did not acknowledge", registry=r
        )
        self.flag_to_decision = Histogram(
            "agad_review_flag_to_decision_seconds",
            "time from a frame's flagging to its stored decision",
            buckets=(10, 30, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 72 * 3600),
            registry=r,
        )


class Reviewing:
    """Claims, decisions and skips of operators over ``store``, labels to ``topic``."""

    def __init__(
        self,
        store: ReviewStore,
        producer: KafkaProducer,
        topic: str,
        defects: list[str],
        metrics: ReviewMetrics | None = None,
    ) -> None:
        self.store = store
        self.producer = producer
        self.topic = topic
        self.defects = defects
        self.metrics = metrics or ReviewMetrics()

    def open(self, frame_id: str, reviewer: str) -> Item:
        """Claim ``frame_id`` for ``reviewer`` and return it; TakenError or GoneError otherwise."""
        claimed = self.store.claim(frame_id, reviewer)
        if claimed == 0:
            raise TakenError(f"another operator is reviewing {frame_id}")
        item = self.store.get(frame_id) if claimed == 1 else None
        if item is None:
            raise GoneError(f"{frame_id} is not in the review queue (decided, expired or never flagged)")
        return item

    def decide(self, frame_id: str, reviewer: str, label: str, defect: str = "") -> Outcome:
        """Store ``reviewer``'s decision on ``frame_id``: ``anomaly`` (with an optional defect name),
        ``normal``, or ``skip`` (back to the queue, no label)."""
        if label not in (*LABELS, SKIP):
            raise AgadError(f"decision {label!r}: choose anomaly, normal or skip")
        if defect and (label != "anomaly" or defect not in self.defects):
            raise AgadError(
                f"defect {defect!r}: only an anomaly takes a defect name, one of {', '.join(self.defects)} "
                "(AGAD_REVIEW__DEFECTS)"
            )
        item = self.open(frame_id, reviewer)
        summary = item.summary
        if label == SKIP:
            self.store.release(frame_id, reviewer)
            return Outcome(frame_id, SKIP, "", 0.0)
        record = LabelRecord(
            frame_id=frame_id,
            camera_id=summary.camera_id,
            ts_ms=summary.ts_ms,
            content_type=item.content_type,
            label=label,  # type: ignore[arg-type]
            defect=defect,
            reviewer=reviewer,
            decided_at=decided_now(),
            model_version=summary.model_version,
            score=summary.score,
            image=item.image,
        )
        try:
            publish(self.producer, self.topic, record)
        except AgadError as exc:
            self.metrics.not_saved.inc()
            raise NotSavedError(f"{exc}; the item stays pending: decide again when Kafka is back") from None
        self.store.finish(frame_id, reviewer, label)
        waited = max(time.time() - summary.flagged_ms / 1000, 0.0)
        self.metrics.decided.labels(label=label).inc()
        self.metrics.flag_to_decision.observe(waited)
        return Outcome(frame_id, label, defect, waited)

    def refresh(self) -> None:
        """Bring the queue up to date and the gauges with it; count what expired."""
        expired = self.store.refresh()
        self.metrics.expired.inc(len(expired))
        counts = self.store.counts()
        self.metrics.pending.set(counts.pending)
        self.metrics.claimed.set(counts.claimed)
