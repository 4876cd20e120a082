"""A record of the ``frames`` topic becomes a :class:`Frame` for the model, or a :class:`Rejection`.

The contract (DESIGN.md): headers ``camera_id``, ``ts_ms`` (capture time, ms since epoch) and
``content_type`` are required; ``frame_id`` is optional and defaults to ``topic:partition:offset``.
Everything wrong with a record, from a missing header to a truncated JPEG, is a rejection whose
reason is short enough for the dead-letter ``error`` header; nothing here raises on bad input.
A dead letter keeps the record's key, value and headers and adds :func:`dead_letter_headers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import cv2
import numpy as np

from agad_stream.preprocess import BadImageError, prepare_image

REQUIRED_HEADERS: Final = ("camera_id", "ts_ms", "content_type")
MAX_HEADER_CHARS: Final = 256
"""Longest accepted header value: ids and content types are short; longer is a producer bug."""


@dataclass(frozen=True)
class Frame:
    """A valid frame: who sent it, when, and its pixels prepared for the model (uint8 S×S×C)."""

    record: Any  # kafka ConsumerRecord: topic, partition, offset, key, value, headers
    frame_id: str
    camera_id: str
    ts_ms: int
    content_type: str
    image: np.ndarray


@dataclass(frozen=True)
class Rejection:
    """A record that cannot be scored and why; it goes to the dead-letter topic unchanged."""

    record: Any
    reason: str


def frame_id_of(record: Any) -> str:
    """The record's ``frame_id`` header, or ``topic:partition:offset`` when it has none."""
    for name, value in record.headers or ():
        if name == "frame_id" and value:
            try:
                return bytes(value).decode()
            except UnicodeDecodeError:
                break
    return f"{record.topic}:{record.partition}:{record.offset}"


def dead_letter_headers(record: Any, reason: str) -> list[tuple[str, bytes]]:
    """The headers a dead letter adds to the frame's own: why it failed, and where it was read."""
    return [
        ("error", reason.encode()),
        ("source_topic", str(record.topic).encode()),
        ("source_partition", str(record.partition).encode()),
        ("source_offset", str(record.offset).encode()),
    ]


def parse_frame(record: Any, *, image_size: int, channels: int) -> Frame | Rejection:
    """Validate ``record``'s headers and decode its value to the model's size and channels."""
    headers: dict[str, str] = {}
    for name, raw in record.headers or ():
        if name in headers:
            continue  # the first of repeated headers counts, as Kafka clients read them
        try:
            value = bytes(raw or b"").decode()
        except UnicodeDecodeError:
            return Rejection(record, f"header {name} is not UTF-8")
        if len(value) > MAX_HEADER_CHARS:
            return Rejection(record, f"header {name} too long ({len(value)} chars, max {MAX_HEADER_CHARS})")
        headers[name] = value
    missing = [name for name in REQUIRED_HEADERS if not headers.get(name, "").strip()]
    if missing:
        return Rejection(record, f"missing header {', '.join(missing)}")
    try:
        ts_ms = int(headers["ts_ms"])
    except ValueError:
        return Rejection(record, f"header ts_ms {headers['ts_ms']!r} is not an integer (ms since epoch)")
    if record.value is None:
        return Rejection(record, "empty image (null value)")
    try:
        image = prepare_image(record.value, headers["content_type"], image_size=image_size, channels=channels)
    except BadImageError as exc:
        return Rejection(record, str(exc))
    except (cv2.error, ValueError) as exc:  # a decoder failing in a way preprocess did not foresee
        return Rejection(record, f"cannot decode image: {str(exc).strip()[:200]}")
    return Frame(
        record=record,
        frame_id=headers.get("frame_id") or frame_id_of(record),
        camera_id=headers["camera_id"],
        ts_ms=ts_ms,
        content_type=headers["content_type"],
        image=image,
    )
