"""A camera simulator: frames per the ``frames`` contract from any data set, at a steady rate.

Used by ``agad simulate`` for demos, tests and benchmarks. Frames are spread over ``cameras``
round-robin; each camera sends ``fps`` frames a second (0: as fast as the producer goes). With a
``corrupt_rate`` a share of frames is spoilt in one of the ways :data:`CORRUPTIONS` lists, so the
scorer's dead-letter path gets exercised too.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import cv2
import numpy as np
from kafka import KafkaProducer

from agad_stream.datasets import dataset_images
from agad_stream.errors import AgadError

log = logging.getLogger(__name__)

FORMATS: Final = {"jpeg": (".jpg", "image/jpeg"), "png": (".png", "image/png"), "bmp": (".bmp", "image/bmp")}
RAW: Final = "raw"
IMAGE_SUFFIXES: Final = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"})
Headers = list[tuple[str, bytes]]


def encode_frame(image: np.ndarray, fmt: str = "jpeg") -> tuple[bytes, str]:
    """(value, content_type) of a uint8 (H, W, C) RGB or grey image in ``fmt``: jpeg, png, bmp or raw."""
    if fmt == RAW:
        height, width, channels = image.shape
        return np.ascontiguousarray(
            image
        ).tobytes(), f"application/x-raw;shape={height},{width},{channels};dtype=uint8"
    if fmt not in FORMATS:
        raise AgadError(f"unknown frame format {fmt!r}; use {', '.join([*FORMATS, RAW])}")
    suffix, content_type = FORMATS[fmt]
    pixels = image if image.shape[2] == 1 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(suffix, pixels)
    if not ok:
        raise AgadError(f"OpenCV cannot encode a {image.shape} image as {fmt}")
    return encoded.tobytes(), content_type


def frame_headers(frame_id: str, camera_id: str, ts_ms: int, content_type: str) -> Headers:
    return [
        ("frame_id", frame_id.encode()),
        ("camera_id", camera_id.encode()),
        ("ts_ms", str(ts_ms).encode()),
        ("content_type", content_type.encode()),
    ]


def _without(headers: Headers, name: str) -> Headers:
    return [(k, v) for k, v in headers if k != name]


def _replace(headers: Headers, name: str, value: bytes) -> Headers:
    return [*_without(headers, name), (name, value)]


CORRUPTIONS: Final[dict[str, Callable[[bytes, Headers], tuple[bytes, Headers]]]] = {
    "truncated": lambda v, h: (
        cv2.imencode(".jpg", np.full((64, 64), 128, np.uint8))[1].tobytes()[:200],
        _replace(h, "content_type", b"image/jpeg"),
    ),
    "empty": lambda v, h: (b"", h),
    "text": lambda v, h: (
        b"this is not an image, it is a log line",
        _replace(h, "content_type", b"image/png"),
    ),
    "tiny": lambda v, h: (
        cv2.imencode(".png", np.zeros((1, 1), np.uint8))[1].tobytes(),
        _replace(h, "content_type", b"image/png"),
    ),
    "huge": lambda v, h: (
        np.zeros((2, 2, 1), np.uint8).tobytes(),
        _replace(h, "content_type", b"application/x-raw;shape=100000,100000,1;dtype=uint8"),
    ),
    "raw_mismatch": lambda v, h: (
        bytes(100),
        _replace(h, "content_type", b"application/x-raw;shape=32,32,1;dtype=uint8"),
    ),
    "missing_headers": lambda v, h: (v, _without(_without(h, "camera_id"), "ts_ms")),
    "unknown_type": lambda v, h: (v, _replace(h, "content_type", b"video/h264")),
}
"""Ways a frame can be broken, each of which the scorer must dead-letter with its own reason."""


def load_images(spec: str, size: int) -> list[np.ndarray]:
    """Images of the data set ``spec`` as uint8 (H, W, C) RGB or grey.

    ``folder:PATH`` reads the image files under ``PATH/test`` (or ``PATH`` when it has no ``test``)
    at their own size and needs nothing else installed. Other specs (``fmnist:<class>``, ``elpv``)
    come from the trainer's data sets at ``size`` px (:mod:`agad_stream.datasets`).
    """
    kind, _, argument = spec.partition(":")
    if kind == "folder" and argument:
        return _folder_images(Path(argument))
    return list(dataset_images(spec, size))


def _folder_images(root: Path) -> list[np.ndarray]:
    base = root / "test" if (root / "test").is_dir() else root
    paths = sorted(p for p in base.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    images = []
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None or image.dtype != np.uint8:
            log.warning("skipping %s: not an 8-bit image OpenCV reads", path)
            continue
        if image.ndim == 2:
            image = image[:, :, None]
        else:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
        images.append(image)
    if not images:
        raise AgadError(f"no images under {base} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return images


@dataclass
class SimulationReport:
    sent: int = 0
    corrupted: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


@dataclass
class Simulator:
    """Sends frames of ``images`` as ``cameras`` cameras at ``fps`` frames a second each."""

    producer: KafkaProducer
    topic: str
    images: list[np.ndarray]
    cameras: int
    fps: float
    fmt: str = "jpeg"
    corrupt_rate: float = 0.0
    seed: int = 0
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def __post_init__(self) -> None:
        if self.cameras < 1 or self.fps < 0 or not 0 <= self.corrupt_rate <= 1:
            raise AgadError("--cameras must be at least 1, --fps 0 or more, --corrupt-rate within [0, 1]")
        self._encoded: dict[int, tuple[bytes, str]] = {}

    def camera_ids(self) -> list[str]:
        return [f"cam-{index:02d}" for index in range(self.cameras)]

    def frames(self, count: int | None) -> Iterator[tuple[str, bytes, Headers, str | None]]:
        """(camera, value, headers, corruption or None) for ``count`` frames (None: forever)."""
        rng = np.random.default_rng(self.seed)
        cameras = self.camera_ids()
        kinds = sorted(CORRUPTIONS)
        index = 0
        while count is None or index < count:
            camera = cameras[index % len(cameras)]
            image_index = int(rng.integers(len(self.images)))
            if image_index not in self._encoded:
                self._encoded[image_index] = encode_frame(self.images[image_index], self.fmt)
            value, content_type = self._encoded[image_index]
            frame_id = f"{camera}-{self.run_id}-{index // len(cameras):07d}"
            headers = frame_headers(frame_id, camera, int(time.time() * 1000), content_type)
            corruption = None
            if self.corrupt_rate and rng.random() < self.corrupt_rate:
                corruption = kinds[int(rng.integers(len(kinds)))]
                value, headers = CORRUPTIONS[corruption](value, headers)
            yield camera, value, headers, corruption
            index += 1

    def run(self, count: int | None = None, duration_s: float | None = None) -> SimulationReport:
        """Send frames until ``count`` are sent or ``duration_s`` has passed; paced to ``fps``."""
        report = SimulationReport()
        interval = 1.0 / (self.fps * self.cameras) if self.fps else 0.0
        start = last_log = time.monotonic()
        for camera, value, headers, corruption in self.frames(count):
            now = time.monotonic()
            if duration_s is not None and now - start >= duration_s:
                break
            if interval:
                wait = start + report.sent * interval - now
                if wait > 0:
                    time.sleep(wait)
            self.producer.send(self.topic, key=camera.encode(), value=value, headers=headers)
            report.sent += 1
            if corruption:
                report.corrupted[corruption] += 1
            if now - last_log >= 5.0:
                log.info("sent %d frames (%.0f/s)", report.sent, report.sent / (now - start))
                last_log = now
        self.producer.flush()
        report.seconds = time.monotonic() - start
        return report
