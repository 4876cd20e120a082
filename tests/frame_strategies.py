"""Hypothesis strategies for hostile frames: what a broken or malicious camera could send.

Shared by tests/test_frame_fuzz.py (a few hundred examples) and benchmarks/fuzz.py (10,000 and up).
Values start from real encodings of small images, then are cut, bit-flipped, spliced, or given a
header that claims a huge image; headers and content types are drawn from the valid ones and from
noise.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from hypothesis import strategies as st

FORMATS = {
    ".jpg": "image/jpeg",
    ".png": "image/png",
    ".bmp": "image/bmp",
    ".tiff": "image/tiff",
    ".webp": "image/webp",
}
CONTENT_TYPES = [
    *FORMATS.values(), "application/octet-stream", "image/x-portable-graymap", "video/h264", "", "image/",
    "application/x-raw", "application/x-raw;shape=32,32,1", "application/x-raw;shape=32,32,3;dtype=uint8",
    "application/x-raw;shape=-1,4,1;dtype=uint8", "application/x-raw;shape=99999,99999,3;dtype=uint8",
    "application/x-raw;shape=8,8;dtype=uint16", "application/x-raw;shape=a,b,c", "IMAGE/PNG; charset=x",
]  # fmt: skip


@dataclass
class Record:
    """The fields of a Kafka ConsumerRecord that parsing reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


def _encoded(ext: str, side: int, channels: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (side, side, channels) if channels > 1 else (side, side), dtype=np.uint8)
    ok, data = cv2.imencode(ext, image)
    assert ok
    return data.tobytes()


@st.composite
def image_bytes(draw: Any) -> tuple[bytes, str]:
    """A real small encoded image, then possibly damaged; with the content type it claims to be."""
    ext = draw(st.sampled_from(list(FORMATS)))
    data = bytearray(
        _encoded(
            ext, draw(st.sampled_from([8, 16, 33])), draw(st.sampled_from([1, 3])), draw(st.integers(0, 9))
        )
    )
    damage = draw(st.sampled_from(["none", "cut", "flip", "splice", "huge", "zero"]))
    if damage == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    elif damage == "flip":
        for _ in range(draw(st.integers(1, 16))):
            position = draw(st.integers(0, len(data) - 1))
            data[position] ^= 1 << draw(st.integers(0, 7))
    elif damage == "splice":
        data[draw(st.integers(0, len(data))) :] = draw(st.binary(max_size=256))
    elif damage == "huge" and ext == ".png":
        data[16:24] = struct.pack(">II", *draw(st.tuples(st.integers(0, 2**31), st.integers(0, 2**31))))
    elif damage == "huge" and ext == ".bmp":
        data[18:26] = struct.pack(
            "<ii", *draw(st.tuples(st.integers(-(2**31), 2**31 - 1), st.integers(-(2**31), 2**31 - 1)))
        )
    elif damage == "zero":
        data = bytearray(len(data))
    content_type = draw(
        st.one_of(st.just(FORMATS[ext]), st.sampled_from(CONTENT_TYPES), st.text(max_size=40))
    )
    return bytes(data), content_type


@st.composite
def raw_bytes(draw: Any) -> tuple[bytes, str]:
    height, width, channels = (
        draw(st.integers(-2, 40)),
        draw(st.integers(-2, 40)),
        draw(st.sampled_from([1, 3, 4, 2])),
    )
    size = max(height, 0) * max(width, 0) * channels
    length = draw(st.sampled_from([size, size + 1, max(size - 1, 0), 0]))
    shape = f"{height},{width},{channels}" if draw(st.booleans()) else f"{height},{width}"
    dtype = draw(st.sampled_from(["uint8", "uint8", "float32", ""]))
    return bytes(draw(st.binary(min_size=length, max_size=length))) if length < 5000 else bytes(length), (
        f"application/x-raw;shape={shape}" + (f";dtype={dtype}" if dtype else "")
    )


header_values = st.one_of(st.binary(max_size=64), st.text(max_size=300).map(str.encode), st.none())


@st.composite
def records(draw: Any) -> Record:
    """A frames-topic record: a value from above (or noise, or none) and headers valid or not."""
    value, content_type = draw(
        st.one_of(
            image_bytes(), raw_bytes(), st.tuples(st.binary(max_size=512), st.sampled_from(CONTENT_TYPES))
        )
    )
    if draw(st.integers(0, 9)) == 0:
        value = None  # type: ignore[assignment]
    headers: list[tuple[str, bytes | None]] = []
    for name, good in (
        ("frame_id", b"f-1"),
        ("camera_id", b"cam-00"),
        ("ts_ms", b"1700000000000"),
        ("content_type", content_type.encode()),
    ):
        choice = draw(st.integers(0, 9))
        if choice == 0:
            continue  # missing
        headers.append((name, draw(header_values) if choice == 1 else good))
    headers += draw(st.lists(st.tuples(st.text(max_size=20), header_values), max_size=3))
    return Record(
        "frames",
        draw(st.integers(0, 5)),
        draw(st.integers(0, 2**40)),
        draw(st.one_of(st.none(), st.binary(max_size=16))),
        value,
        headers,
    )
