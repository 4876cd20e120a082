"""Where each frame's outcome goes, as a pure function of the batch: no client, no clock, no state.

- every scored frame: a score record (JSON) on the scores topic, keyed by camera;
- a scored frame at or above the threshold: also a review item for the Redis review queue;
- a frame that could not be scored: the record as it came, plus the dead-letter headers, on the
  dead-letter topic.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from agad_stream.config import TopicSettings
from agad_stream.review.queue import ReviewItem
from agad_stream.stream.frames import Frame, Rejection, dead_letter_headers

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class OutRecord:
    """A record to produce."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)


@dataclass(frozen=True)
class Routed:
    """A batch's outputs, and how many frames were scored, flagged and dead-lettered."""

    records: list[OutRecord]
    reviews: list[ReviewItem]
    scored: int
    flagged: int
    dead_lettered: int


def route(
    frames: Sequence[Frame],
    scores: np.ndarray,
    heatmaps: np.ndarray,
    rejections: Sequence[Rejection],
    *,
    threshold: float,
    model_version: str,
    topics: TopicSettings,
    now_ms: float,
) -> Routed:
    """Outputs of a batch: ``frames`` were scored (``scores``, ``heatmaps`` in the same order),
    ``rejections`` could not be; ``now_ms`` is when the scores were made (for ``latency_ms``)."""
    records: list[OutRecord] = []
    reviews: list[ReviewItem] = []
    for frame, score, heatmap in zip(frames, scores.tolist(), heatmaps, strict=True):
        flagged = score >= threshold
        verdict = {
            "frame_id": frame.frame_id,
            "camera_id": frame.camera_id,
            "ts_ms": frame.ts_ms,
            "score": score,
            "threshold": threshold,
            "is_anomaly": flagged,
            "model_version": model_version,
            "latency_ms": round(now_ms - frame.ts_ms, 3),
        }
        records.append(OutRecord(topics.scores, frame.camera_id.encode(), json.dumps(verdict).encode()))
        if flagged:
            reviews.append(
                ReviewItem(
                    frame_id=frame.frame_id,
                    camera_id=frame.camera_id,
                    ts_ms=frame.ts_ms,
                    score=score,
                    threshold=threshold,
                    model_version=model_version,
                    image=bytes(frame.record.value),
                    content_type=frame.content_type,
                    heatmap=np.asarray(heatmap),
                )
            )
    for rejection in rejections:
        record = rejection.record
        headers = [*(record.headers or []), *dead_letter_headers(record, rejection.reason)]
        records.append(OutRecord(topics.dead_letter, record.key, record.value, headers))
    return Routed(records, reviews, len(frames), len(reviews), len(rejections))
