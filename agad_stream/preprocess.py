"""The one place where images become model input, shared by training and every inference backend.

A model sees exactly what the trainer saw only if both take the same path, so the data loaders in
``trainer.data`` and the scorers both call :func:`prepare_image` and :func:`to_model_input`.

Steps and conventions:

1. Decode (:func:`decode_image`): encoded bytes (JPEG, PNG, BMP, TIFF, WebP, PNM: anything
   ``cv2.imdecode`` reads, recognised by content, not by the content type) or raw pixels with
   content type ``application/x-raw;shape=H,W,C;dtype=uint8`` (C = 1, 3 or 4; 3 and 4 are RGB and
   RGBA in that order). The result is uint8 (H, W, C) with C = 1 (grayscale) or C = 3 in **RGB**
   order: OpenCV's BGR is converted once, here, and nothing downstream sees BGR. Alpha is
   dropped; 16-bit images are scaled to 8 bits by 1/256, as OpenCV's own 8-bit conversion does.
   EXIF orientation is ignored (industrial cameras do not rotate their frames). For model input
   (:func:`prepare_image`), a JPEG at least twice the model size on both sides is decoded at 1/2,
   1/4 or 1/8 of its size and straight to the model's channel count: libjpeg scales in the DCT
   domain, which costs a fraction of decoding every pixel of a camera frame and then averaging
   them away. Training and scoring both take this path, so the model sees the same pixels.
2. Channels (:func:`convert_channels`): to what the model wants, 1 (ITU-R BT.601 luma, OpenCV's
   ``RGB2GRAY``) or 3 (grayscale replicated).
3. Resize (:func:`resize_square`): to image_size × image_size, stretching non-square frames rather
   than cropping them, so a defect at the border is never cut away. ``INTER_AREA`` when
   shrinking (it averages, so no aliasing), ``INTER_LINEAR`` when enlarging.
4. Normalise a whole batch (:func:`to_model_input`): uint8 NHWC → float32 NCHW in [-1, 1]
   ((x − 127.5) / 127.5), the range of the generator's tanh output. :func:`from_model_output` inverts it.

Bad input raises :class:`BadImageError`, whose message is short and names what is wrong; the
streaming scorer copies it into the dead-letter ``error`` header.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

import cv2
import numpy as np

from agad_stream.errors import AgadError

MIN_SIDE: Final = 8
"""Smallest accepted width or height in pixels: smaller frames carry no usable detail."""
MAX_SIDE: Final = 16384
"""Largest accepted width or height: beyond it a frame is a mistake or a decompression bomb."""
MAX_PIXELS: Final = 64 * 1024 * 1024
"""Largest accepted width × height (a 5-megapixel camera sends 5 M): checked in the header, before
anything is decoded, so that a small file claiming a huge image cannot take the memory."""

RAW_CONTENT_TYPE: Final = "application/x-raw"
ENCODED_CONTENT_TYPES: Final = frozenset(
    {
        "image/jpeg",
        "image/jpg",
        "image/pjpeg",
        "image/png",
        "image/bmp",
        "image/x-bmp",
        "image/x-ms-bmp",
        "image/tiff",
        "image/tif",
        "image/webp",
        "image/x-portable-anymap",
        "image/x-portable-bitmap",
        "image/x-portable-graymap",
        "image/x-portable-pixmap",
        "application/octet-stream",
    }
)
"""Content types decoded with ``cv2.imdecode``; the format itself is recognised from the bytes."""

NORMALIZATION: Final = {
    "layout": "NCHW",
    "dtype": "float32",
    "mean": 127.5,
    "std": 127.5,
    "range": [-1.0, 1.0],
    "channel_order": "RGB",
}
"""How :func:`to_model_input` maps pixels, (x − mean) / std, recorded in ``model.json``."""


class BadImageError(AgadError):
    """A frame that cannot become model input; the message says why in a few words."""


def decode_image(data: bytes | bytearray | memoryview, content_type: str | None = None) -> np.ndarray:
    """Decode one frame to uint8 (H, W, C), C = 1 or 3 (RGB), in its native channel count.

    ``content_type`` None means "encoded, format unknown": OpenCV recognises it from the bytes.
    """
    return _decode(data, content_type, None)


def _decode(
    data: bytes | bytearray | memoryview, content_type: str | None, scaled_for: tuple[int, int] | None
) -> np.ndarray:
    """:func:`decode_image`; with ``scaled_for`` = (size, channels), a large JPEG comes back scaled
    down (never below ``size``) and with ``channels`` channels."""
    buffer = bytes(data)
    if not buffer:
        raise BadImageError("empty image (0 bytes)")
    media_type, params = _parse_content_type(content_type)
    if media_type == RAW_CONTENT_TYPE:
        return _decode_raw(buffer, params)
    if media_type is not None and media_type not in ENCODED_CONTENT_TYPES:
        raise BadImageError(f"unknown content type {content_type!r}")
    return _decode_encoded(buffer, media_type or "image", scaled_for)


def convert_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Convert a decoded uint8 (H, W, 1|3) RGB image to 1 or 3 channels."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels}")
    have = image.shape[2]
    if have == channels:
        return image
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None]
    return np.repeat(image, 3, axis=2)


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 (H, W, C) to (size, size, C): INTER_AREA when shrinking, INTER_LINEAR otherwise."""
    height, width, channels = image.shape
    if (height, width) == (size, size):
        return image
    shrinking = height * width > size * size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    resized = cv2.resize(image, (size, size), interpolation=interpolation)
    return resized.reshape(size, size, channels)


def prepare_image(
    data: bytes | bytearray | memoryview, content_type: str | None, *, image_size: int, channels: int
) -> np.ndarray:
    """Decode, convert and resize one frame: uint8 (image_size, image_size, channels); a large JPEG is
    decoded scaled down (see the module docstring)."""
    image = _decode(data, content_type, (image_size, channels))
    return resize_square(convert_channels(image, channels), image_size)


def resize_batch(images: np.ndarray, size: int) -> np.ndarray:
    """Resize a uint8 (N, H, W, C) batch to (N, size, size, C), image by image as :func:`resize_square`.

    (Resizing many channels in one OpenCV call is faster, but its channel limit differs between
    OpenCV versions; a loop does 100,000 small images a second, which is fast enough.)
    """
    if images.shape[1:3] == (size, size):
        return images
    out = np.empty((images.shape[0], size, size, images.shape[3]), dtype=images.dtype)
    for i, image in enumerate(images):
        out[i] = resize_square(image, size)
    return out


def stack_images(images: Sequence[np.ndarray]) -> np.ndarray:
    """Stack prepared (S, S, C) images into a uint8 (N, S, S, C) batch."""
    if not images:
        raise ValueError("no images to stack")
    return np.stack(images).astype(np.uint8, copy=False)


def to_model_input(batch: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, C) → float32 (N, C, H, W) in [-1, 1], contiguous, ready for any backend."""
    if batch.dtype != np.uint8 or batch.ndim != 4:
        raise ValueError(f"expected a uint8 (N, H, W, C) batch, got {batch.dtype} {batch.shape}")
    out = np.empty((batch.shape[0], batch.shape[3], batch.shape[1], batch.shape[2]), dtype=np.float32)
    out[...] = batch.transpose(0, 3, 1, 2)
    out -= np.float32(127.5)  # (x − 127.5) / 127.5 maps 0 and 255 to exactly −1 and 1
    out /= np.float32(127.5)
    return out


def from_model_output(batch: np.ndarray) -> np.ndarray:
    """float (N, C, H, W) in [-1, 1] → uint8 (N, H, W, C), e.g. to show a reconstruction."""
    if batch.ndim != 4:
        raise ValueError(f"expected an (N, C, H, W) batch, got shape {batch.shape}")
    pixels = np.clip((np.asarray(batch, dtype=np.float32) + 1.0) * 127.5, 0, 255)
    return np.rint(pixels).astype(np.uint8).transpose(0, 2, 3, 1).copy()


# --- internals -------------------------------------------------------------------------------


def _parse_content_type(content_type: str | None) -> tuple[str | None, dict[str, str]]:
    """Split ``type/subtype; k=v; ...`` into a lower-case media type and its parameters."""
    if content_type is None or not content_type.strip():
        return None, {}
    head, *rest = content_type.split(";")
    params: dict[str, str] = {}
    for item in rest:
        key, sep, value = item.partition("=")
        if sep:
            params[key.strip().lower()] = value.strip().strip('"')
    return head.strip().lower(), params


def _check_size(height: int, width: int) -> None:
    if height < MIN_SIDE or width < MIN_SIDE:
        raise BadImageError(f"image too small: {width}x{height} px (minimum {MIN_SIDE})")
    if height > MAX_SIDE or width > MAX_SIDE:
        raise BadImageError(f"image too large: {width}x{height} px (maximum {MAX_SIDE})")
    if height * width > MAX_PIXELS:
        raise BadImageError(
            f"image too large: {width}x{height} px (maximum {MAX_PIXELS // 2**20} megapixels)"
        )


def _decode_raw(buffer: bytes, params: dict[str, str]) -> np.ndarray:
    dtype = params.get("dtype", "uint8").lower()
    if dtype != "uint8":
        raise BadImageError(f"unsupported raw dtype {dtype!r} (only uint8)")
    if "shape" not in params:
        raise BadImageError("raw frame without shape=H,W,C in its content type")
    try:
        shape = tuple(int(v) for v in params["shape"].split(","))
    except ValueError:
        raise BadImageError(f"bad raw shape {params['shape']!r} (want H,W,C)") from None
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) != 3 or shape[2] not in (1, 3, 4) or min(shape) <= 0:
        raise BadImageError(f"bad raw shape {params['shape']!r} (want H,W,C with C 1, 3 or 4)")
    height, width, channels = shape
    _check_size(height, width)
    expected = height * width * channels
    if len(buffer) != expected:
        raise BadImageError(
            f"raw shape mismatch: {height},{width},{channels} needs {expected} bytes, got {len(buffer)}"
        )
    image = np.frombuffer(buffer, dtype=np.uint8).reshape(shape)
    return image[:, :, :3].copy() if channels == 4 else image.copy()


def _decode_encoded(buffer: bytes, what: str, scaled_for: tuple[int, int] | None) -> np.ndarray:
    header = _peek_size(buffer)
    if header is None:
        raise BadImageError(
            f"cannot decode {what} ({len(buffer)} bytes): truncated, or not JPEG/PNG/BMP/TIFF/WebP/PNM"
        )
    _check_size(*header)
    if buffer[:2] == b"\xff\xd8" and b"\xff\xd9" not in buffer[-1024:]:
        # Older OpenCV returns a grey-filled picture for a cut JPEG; a complete one ends with EOI.
        raise BadImageError(f"truncated {what} ({len(buffer)} bytes, no end marker)")
    flags = cv2.IMREAD_UNCHANGED
    if scaled_for is not None and buffer[:2] == b"\xff\xd8":
        flags = _scaled_jpeg_flags(header, *scaled_for)
    image = cv2.imdecode(np.frombuffer(buffer, dtype=np.uint8), flags)
    if image is None or image.size == 0:
        raise BadImageError(f"cannot decode {what} ({len(buffer)} bytes): truncated or not an image")
    _check_size(image.shape[0], image.shape[1])
    if image.dtype == np.uint16:
        image = np.right_shift(image, 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise BadImageError(f"unsupported pixel type {image.dtype} in {what}")
    if image.ndim == 2:
        return image[:, :, None]
    code = {1: None, 3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGB}.get(image.shape[2], -1)
    if code == -1:
        raise BadImageError(f"unsupported channel count {image.shape[2]} in {what}")
    return image if code is None else cv2.cvtColor(image, code)


_SCALED_JPEG: Final = {
    (2, 1): cv2.IMREAD_REDUCED_GRAYSCALE_2,
    (4, 1): cv2.IMREAD_REDUCED_GRAYSCALE_4,
    (8, 1): cv2.IMREAD_REDUCED_GRAYSCALE_8,
    (2, 3): cv2.IMREAD_REDUCED_COLOR_2,
    (4, 3): cv2.IMREAD_REDUCED_COLOR_4,
    (8, 3): cv2.IMREAD_REDUCED_COLOR_8,
}


def _scaled_jpeg_flags(header: tuple[int, int], size: int, channels: int) -> int:
    """imdecode flags for a JPEG of ``header`` = (height, width) on its way to a ``size`` px model:
    the largest of 1/8, 1/4 and 1/2 that leaves both sides at least ``size`` (libjpeg rounds up),
    decoded to ``channels``; a JPEG too small for that is decoded as it is."""
    for factor in (8, 4, 2):
        if min(header) // factor >= max(size, MIN_SIDE) and (factor, channels) in _SCALED_JPEG:
            return _SCALED_JPEG[factor, channels] | cv2.IMREAD_IGNORE_ORIENTATION
    return cv2.IMREAD_UNCHANGED


def _peek_size(buffer: bytes) -> tuple[int, int] | None:
    """(height, width) from the header of a format the scorer takes, before decoding anything; None
    for anything else (another format, or a header cut short)."""
    try:
        if buffer[:8] == b"\x89PNG\r\n\x1a\n" and buffer[12:16] == b"IHDR":
            width, height = struct.unpack(">II", buffer[16:24])
            return height, width
        if buffer[:2] == b"BM" and len(buffer) >= 26:
            width, height = struct.unpack("<ii", buffer[18:26])
            return abs(height), abs(width)
        if buffer[:2] == b"\xff\xd8":
            return _peek_jpeg_size(buffer)
        if buffer[:4] in (b"II*\x00", b"MM\x00*"):
            return _peek_tiff_size(buffer)
        if buffer[:4] == b"RIFF" and buffer[8:12] == b"WEBP":
            return _peek_webp_size(buffer)
        if buffer[:1] == b"P" and buffer[1:2] in b"123456":
            return _peek_pnm_size(buffer)
    except (struct.error, ValueError, IndexError):
        return None
    return None


def _peek_tiff_size(buffer: bytes) -> tuple[int, int] | None:
    """ImageLength and ImageWidth of a TIFF's first directory."""
    order = "<" if buffer[:2] == b"II" else ">"
    (offset,) = struct.unpack(order + "I", buffer[4:8])
    (count,) = struct.unpack(order + "H", buffer[offset : offset + 2])
    found: dict[int, int] = {}
    for i in range(min(count, 4096)):
        entry = buffer[offset + 2 + 12 * i : offset + 14 + 12 * i]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):
            found[tag] = struct.unpack(
                order + ("H" if kind == 3 else "I"), entry[8 : 10 if kind == 3 else 12]
            )[0]
    return (found[257], found[256]) if len(found) == 2 else None


def _peek_webp_size(buffer: bytes) -> tuple[int, int] | None:
    chunk = buffer[12:16]
    if chunk == b"VP8 " and buffer[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", buffer[26:30])
        return height & 0x3FFF, width & 0x3FFF
    if chunk == b"VP8L" and buffer[20] == 0x2F:
        (bits,) = struct.unpack("<I", buffer[21:25])
        return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
    if chunk == b"VP8X":
        width = int.from_bytes(buffer[24:27], "little") + 1
        height = int.from_bytes(buffer[27:30], "little") + 1
        return height, width
    return None


def _peek_pnm_size(buffer: bytes) -> tuple[int, int] | None:
    """Width and height of a PBM/PGM/PPM: the two numbers after the magic, comments skipped."""
    numbers: list[int] = []
    for line in buffer[2:256].split(b"\n"):
        numbers += [int(token) for token in line.split(b"#")[0].split()]
        if len(numbers) >= 2:
            return numbers[1], numbers[0]
    return None


def _peek_jpeg_size(buffer: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 9 <= len(buffer):
        if buffer[pos] != 0xFF:
            return None
        marker = buffer[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", buffer[pos + 2 : pos + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            height, width = struct.unpack(">HH", buffer[pos + 5 : pos + 9])
            return height, width
        pos += 2 + length
    return None
