"""The review queue in Redis: flagged frames wait here for an operator.

Keys, all under the configured prefix:

- ``review:pending`` — a stream of ``{frame_id}`` entries with the consumer group ``reviewers``
  (claim with a visibility timeout, re-deliver what a reviewer abandoned: Redis streams do that;
  :mod:`agad_stream.review.store` is the reviewers' side).
- ``review:item:<frame_id>`` — a hash with the frame's image (the bytes the camera sent, and their
  content type), its heat-map as PNG, score, threshold, camera, capture time, model version and
  the id of its stream entry (``entry_id``).
- ``review:scores`` — a sorted set of the pending frame_ids by score: the queue, worst first.
- ``review:seen:<frame_id>`` — a marker that the frame was queued once, kept for
  :data:`SEEN_TTL_S` even after the item is decided and deleted.

:meth:`ReviewQueue.add` is idempotent by frame_id: one Lua script sets the marker with ``NX`` and
only when it was new writes the hash, appends to the stream and indexes the score, atomically. A
scorer replaying frames after a crash therefore never shows an operator the same frame twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np
import redis

SEEN_TTL_S: Final = 7 * 24 * 3600
"""How long a queued frame_id is remembered: longer than any replay of the frames topic we expect."""
GROUP: Final = "reviewers"

_ADD = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
redis.call('HSET', KEYS[2], unpack(ARGV, 4))
local entry = redis.call('XADD', KEYS[3], '*', 'frame_id', ARGV[2])
redis.call('HSET', KEYS[2], 'entry_id', entry)
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[2])
return 1
"""


@dataclass(frozen=True)
class ReviewItem:
    """What an operator needs to judge a flagged frame."""

    frame_id: str
    camera_id: str
    ts_ms: int
    score: float
    threshold: float
    model_version: str
    image: bytes
    content_type: str
    heatmap: np.ndarray  # float (H, W) or (1, H, W): per-pixel reconstruction error


class ReviewQueue:
    """Writes review items; ``prefix`` is the settings' Redis key prefix."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.stream = f"{prefix}review:pending"
        self.scores = f"{prefix}review:scores"
        self._item = f"{prefix}review:item:"
        self._seen = f"{prefix}review:seen:"
        self._add = client.register_script(_ADD)

    def ensure_group(self) -> None:
        """Create the stream and the reviewers' consumer group unless they exist."""
        try:
            self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def item_key(self, frame_id: str) -> str:
        return self._item + frame_id

    def add(self, items: Sequence[ReviewItem]) -> int:
        """Queue ``items`` in one round trip; returns how many were new (the rest were queued before)."""
        if not items:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for item in items:
            fields: list[str | bytes | float | int] = []
            for name, value in _fields(item).items():
                fields += [name, value]
            self._add(
                keys=[self._seen + item.frame_id, self._item + item.frame_id, self.stream, self.scores],
                args=[SEEN_TTL_S, item.frame_id, repr(float(item.score)), *fields],
                client=pipe,
            )
        return sum(int(added) for added in pipe.execute())


def heatmap_png(heatmap: np.ndarray) -> tuple[bytes, float]:
    """The heat-map as an 8-bit grey PNG scaled to its own maximum, and that maximum."""
    values = np.asarray(heatmap, dtype=np.float32).reshape(heatmap.shape[-2], heatmap.shape[-1])
    peak = float(values.max()) if values.size else 0.0
    pixels = np.zeros(values.shape, np.uint8) if peak <= 0 else np.rint(values / peak * 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise RuntimeError("OpenCV could not encode a heat-map as PNG")
    return encoded.tobytes(), peak


def _fields(item: ReviewItem) -> dict[str, str | bytes | float | int]:
    png, peak = heatmap_png(item.heatmap)
    return {
        "frame_id": item.frame_id,
        "camera_id": item.camera_id,
        "ts_ms": item.ts_ms,
        "score": repr(float(item.score)),
        "threshold": repr(float(item.threshold)),
        "model_version": item.model_version,
        "image": item.image,
        "content_type": item.content_type,
        "heatmap_png": png,
        "heatmap_max": repr(peak),
    }
