"""The reviewers' side of the review queue: list, claim, release, finish and expire items.

The queue is the scorer's stream ``review:pending`` with the consumer group ``reviewers``
(:mod:`agad_stream.review.queue`). New entries are read into the group by the consumer
:data:`QUEUE` (``XREADGROUP``), so that every pending item has an owner in the group's pending
list: :data:`QUEUE` while nobody has it, an operator's name once opened. Opening an item claims it
(``XCLAIM``, in one Lua script that first checks the owner), so two operators never hold the same
item; a claim idle for longer than the claim timeout goes back to :data:`QUEUE` (``XAUTOCLAIM``).
A decided item is acknowledged (``XACK``) and deleted only after its label is stored elsewhere
(:mod:`agad_stream.review.decisions`), and only by the operator who holds it.

The web page and ``agad review list|show|decide`` both go through :class:`ReviewStore`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import redis

from agad_stream.review.queue import GROUP, ReviewQueue

log = logging.getLogger(__name__)

QUEUE: Final = "queue"
"""The group consumer that holds every item nobody has opened."""
DECIDED_TTL_S: Final = 3 * 24 * 3600
"""How long the per-day counts of decisions are kept."""
READ_BATCH: Final = 1000

_CLAIM = """
local entry = redis.call('HGET', KEYS[2], 'entry_id')
if not entry then return -1 end
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], entry, entry, 1)
if #pending == 0 then return -1 end
local owner, idle = pending[1][2], tonumber(pending[1][3])
if owner ~= ARGV[2] and owner ~= ARGV[3] and idle < tonumber(ARGV[4]) then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, entry, 'JUSTID')
return 1
"""
"""KEYS stream, item; ARGV group, reviewer, QUEUE, claim timeout ms. 1 claimed, 0 someone else's, -1 gone."""

_RELEASE = """
local entry = redis.call('HGET', KEYS[2], 'entry_id')
if not entry then return 0 end
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], entry, entry, 1)
if #pending == 0 or pending[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, entry, 'JUSTID')
return 1
"""
"""KEYS stream, item; ARGV group, reviewer, QUEUE. Hands the reviewer's item back to the queue."""

_FINISH = """
local entry = redis.call('HGET', KEYS[2], 'entry_id')
if not entry then return -1 end
if ARGV[2] ~= '' then
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], entry, entry, 1)
  if #pending == 0 or pending[1][2] ~= ARGV[2] then return 0 end
end
redis.call('XACK', KEYS[1], ARGV[1], entry)
redis.call('XDEL', KEYS[1], entry)
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[3])
if ARGV[4] ~= '' then
  redis.call('HINCRBY', KEYS[4], ARGV[4], 1)
  redis.call('EXPIRE', KEYS[4], ARGV[5])
end
return 1
"""
"""KEYS stream, item, scores, day counts; ARGV group, owner ('' = any), frame_id, label ('' = none),
counts TTL. 1 finished, 0 not the owner's, -1 gone."""


@dataclass(frozen=True)
class Summary:
    """One queue entry as the list shows it."""

    frame_id: str
    camera_id: str
    ts_ms: int
    score: float
    threshold: float
    model_version: str
    flagged_ms: int  # when the scorer queued it (its stream entry's time)
    owner: str | None  # the operator who has it open, None while it waits


@dataclass(frozen=True)
class Item:
    """Everything about one queued frame, image and heat-map included."""

    summary: Summary
    image: bytes
    content_type: str
    heatmap_png: bytes
    heatmap_max: float


@dataclass(frozen=True)
class Counts:
    pending: int
    claimed: int
    decided_today: dict[str, int]


class ReviewStore:
    """Reviewers' operations on the queue under ``prefix``; ``claim_timeout_s`` bounds an open claim."""

    def __init__(self, client: redis.Redis, prefix: str, claim_timeout_s: float, max_age_s: float) -> None:
        self.client: Any = client  # redis-py types replies for sync and async clients alike
        self.queue = ReviewQueue(client, prefix)
        self.claim_timeout_ms = int(claim_timeout_s * 1000)
        self.max_age_ms = int(max_age_s * 1000)
        self._decided = f"{prefix}review:decided:"
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        self._finish = client.register_script(_FINISH)

    # --- the queue ----------------------------------------------------------------------------

    def refresh(self, now_ms: int | None = None) -> list[str]:
        """Take new entries into the group, return abandoned claims to the queue, and expire items
        older than the maximum age; returns the frame_ids expired."""
        self.queue.ensure_group()
        stream = self.queue.stream
        while self.client.xreadgroup(GROUP, QUEUE, {stream: ">"}, count=READ_BATCH):
            pass
        self.client.xautoclaim(
            stream, GROUP, QUEUE, self.claim_timeout_ms, "0-0", count=READ_BATCH, justid=True
        )
        return self._expire(now_ms if now_ms is not None else int(time.time() * 1000))

    def _expire(self, now_ms: int) -> list[str]:
        expired = []
        oldest = f"{now_ms - self.max_age_ms}-0"
        for entry_id, fields in self.client.xrange(self.queue.stream, "-", f"({oldest}", count=READ_BATCH):
            frame_id = _text(fields.get(b"frame_id", b""))
            if self._finish_item(frame_id, owner="", label=""):
                age_h = (now_ms - _entry_ms(entry_id)) / 3_600_000
                log.warning("review item %s expired undecided after %.1f h", frame_id, age_h)
                expired.append(frame_id)
        return expired

    def pending(self, camera: str | None = None) -> list[Summary]:
        """Every pending item, highest score first; only ``camera``'s when given."""
        owners = self._owners()
        frame_ids = [_text(f) for f in self.client.zrevrange(self.queue.scores, 0, -1)]
        fields = ("camera_id", "ts_ms", "score", "threshold", "model_version", "entry_id")
        pipe = self.client.pipeline(transaction=False)
        for frame_id in frame_ids:
            pipe.hmget(self.queue.item_key(frame_id), fields)
        found = []
        for frame_id, values in zip(frame_ids, pipe.execute(), strict=True):
            if values[5] is None:  # decided or expired meanwhile
                continue
            summary = _summary(frame_id, [_text(v) for v in values], owners)
            if camera is None or summary.camera_id == camera:
                found.append(summary)
        return found

    def counts(self) -> Counts:
        owners = self._owners()
        claimed = sum(1 for owner in owners.values() if owner != QUEUE)
        decided = self.client.hgetall(self._decided + _today())
        return Counts(
            pending=int(self.client.zcard(self.queue.scores)),
            claimed=claimed,
            decided_today={_text(k): int(v) for k, v in decided.items()},
        )

    def get(self, frame_id: str) -> Item | None:
        raw = self.client.hgetall(self.queue.item_key(frame_id))
        if not raw or b"entry_id" not in raw:
            return None
        text = {_text(k): v for k, v in raw.items()}
        fields = [
            _text(text.get(n, b""))
            for n in ("camera_id", "ts_ms", "score", "threshold", "model_version", "entry_id")
        ]
        return Item(
            _summary(frame_id, fields, self._owners()),
            bytes(text.get("image", b"")),
            _text(text.get("content_type", b"application/octet-stream")),
            bytes(text.get("heatmap_png", b"")),
            float(_text(text.get("heatmap_max", b"0"))),
        )

    # --- an operator's item -------------------------------------------------------------------

    def claim(self, frame_id: str, reviewer: str) -> int:
        """1: ``reviewer`` has it now (a claim of theirs is renewed); 0: another operator has it;
        -1: it is not in the queue (decided, expired or never queued)."""
        keys = [self.queue.stream, self.queue.item_key(frame_id)]
        return int(self._claim(keys=keys, args=[GROUP, reviewer, QUEUE, self.claim_timeout_ms]))

    def release(self, frame_id: str, reviewer: str) -> bool:
        """Give ``reviewer``'s item back to the queue (skip); False when it was not theirs."""
        keys = [self.queue.stream, self.queue.item_key(frame_id)]
        return bool(self._release(keys=keys, args=[GROUP, reviewer, QUEUE]))

    def next_for(
        self, reviewer: str, skipped: set[str] | frozenset[str] = frozenset(), camera: str | None = None
    ) -> Item | None:
        """Claim and return the highest-scored item nobody has (or ``reviewer``'s own), ``skipped`` aside."""
        for summary in self.pending(camera):
            if summary.frame_id in skipped or summary.owner not in (None, reviewer):
                continue
            if self.claim(summary.frame_id, reviewer) == 1:
                return self.get(summary.frame_id)
        return None

    def finish(self, frame_id: str, reviewer: str, label: str) -> int:
        """After the label is stored: remove ``reviewer``'s item and count the decision.
        1 done, 0 another operator holds it now, -1 already gone."""
        return self._finish_item(frame_id, owner=reviewer, label=label)

    def _finish_item(self, frame_id: str, *, owner: str, label: str) -> int:
        keys = [self.queue.stream, self.queue.item_key(frame_id), self.queue.scores, self._decided + _today()]
        return int(self._finish(keys=keys, args=[GROUP, owner, frame_id, label, DECIDED_TTL_S]))

    def _owners(self) -> dict[str, str]:
        """entry id -> owning consumer, for every entry in the group's pending list."""
        owners: dict[str, str] = {}
        start = "-"
        while True:
            batch = self.client.xpending_range(self.queue.stream, GROUP, start, "+", READ_BATCH)
            for entry in batch:
                owners[_text(entry["message_id"])] = _text(entry["consumer"])
            if len(batch) < READ_BATCH:
                return owners
            start = "(" + _text(batch[-1]["message_id"])


def _summary(frame_id: str, values: list[str], owners: dict[str, str]) -> Summary:
    camera, ts_ms, score, threshold, version, entry = values
    owner = owners.get(entry)
    return Summary(
        frame_id,
        camera,
        int(ts_ms or 0),
        float(score or "nan"),
        float(threshold or "nan"),
        version,
        _entry_ms(entry),
        None if owner in (None, QUEUE) else owner,
    )


def _entry_ms(entry_id: str | bytes) -> int:
    return int(_text(entry_id).split("-")[0] or 0)


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def _today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")
