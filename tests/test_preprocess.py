"""agad_stream.preprocess: decoding, channel and size conventions, normalisation, clear errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from agad_stream.errors import AgadError
from agad_stream.preprocess import (
    NORMALIZATION,
    BadImageError,
    convert_channels,
    decode_image,
    from_model_output,
    prepare_image,
    resize_batch,
    resize_square,
    to_model_input,
)


def _rgb(height: int = 40, width: int = 48) -> np.ndarray:
    """A colour image with distinct channels: R ramps along x, G along y, B constant."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:, :, 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    image[:, :, 1] = np.linspace(0, 255, height, dtype=np.uint8)[:, None]
    image[:, :, 2] = 60
    return image


def _encode(ext: str, image: np.ndarray) -> bytes:
    """Encode an RGB (or single-channel) image the way a camera would write it."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 and image.shape[2] == 3 else image
    ok, buf = cv2.imencode(ext, bgr)
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize(
    ("ext", "content_type"),
    [(".png", "image/png"), (".bmp", "image/bmp"), (".tiff", "image/tiff"), (".png", None)],
)
def test_lossless_formats_decode_to_rgb(ext: str, content_type: str | None) -> None:
    image = _rgb()
    decoded = decode_image(_encode(ext, image), content_type)
    assert decoded.dtype == np.uint8 and decoded.shape == (40, 48, 3)
    np.testing.assert_array_equal(decoded, image)  # RGB order, not OpenCV's BGR


def test_jpeg_decodes_close_to_original_and_content_type_params_are_ignored() -> None:
    image = _rgb()
    decoded = decode_image(_encode(".jpg", image), "Image/JPEG; charset=binary")
    assert decoded.shape == image.shape
    assert np.abs(decoded.astype(int) - image.astype(int)).mean() < 4


def test_grayscale_png_stays_single_channel_and_16_bit_is_scaled() -> None:
    gray = np.arange(16 * 16, dtype=np.uint8).reshape(16, 16)
    assert decode_image(_encode(".png", gray), "image/png").shape == (16, 16, 1)
    deep = gray.astype(np.uint16) * 257
    np.testing.assert_array_equal(decode_image(_encode(".png", deep))[:, :, 0], gray)


def test_rgba_png_drops_alpha() -> None:
    rgba = np.dstack([_rgb(), np.full((40, 48), 128, np.uint8)])
    _, buf = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    np.testing.assert_array_equal(decode_image(buf.tobytes(), "image/png"), _rgb())


def test_raw_pixels() -> None:
    image = _rgb(10, 12)
    decoded = decode_image(image.tobytes(), "application/x-raw;shape=10,12,3;dtype=uint8")
    np.testing.assert_array_equal(decoded, image)
    gray = decode_image(bytes(range(100)), "application/x-raw; shape=10,10; dtype=uint8")
    assert gray.shape == (10, 10, 1)
    rgba = decode_image(bytes(10 * 10 * 4), "application/x-raw;shape=10,10,4;dtype=uint8")
    assert rgba.shape == (10, 10, 3)


@pytest.mark.parametrize(
    ("data", "content_type", "message"),
    [
        (b"", "image/png", "empty image"),
        (b"not an image at all", "image/jpeg", "cannot decode image/jpeg"),
        (b"\x00" * 100, "text/plain", "unknown content type 'text/plain'"),
        (
            bytes(10),
            "application/x-raw;shape=10,10,3;dtype=uint8",
            "raw shape mismatch: 10,10,3 needs 300 bytes",
        ),
        (bytes(10), "application/x-raw;dtype=uint8", "without shape"),
        (bytes(10), "application/x-raw;shape=a,b;dtype=uint8", "bad raw shape"),
        (bytes(10), "application/x-raw;shape=10,10,3;dtype=float32", "unsupported raw dtype 'float32'"),
        (bytes(4 * 4), "application/x-raw;shape=4,4,1;dtype=uint8", "too small: 4x4 px"),
        (bytes(9), "application/x-raw;shape=9,20000,1;dtype=uint8", "too large: 20000x9 px"),
    ],
)
def test_bad_frames_raise_short_specific_errors(data: bytes, content_type: str, message: str) -> None:
    with pytest.raises(BadImageError, match=message) as info:
        decode_image(data, content_type)
    assert isinstance(info.value, AgadError)
    assert len(str(info.value)) < 100


@pytest.mark.parametrize(
    ("ext", "content_type"),
    [(".png", "image/png"), (".jpg", "image/jpeg"), (".bmp", "image/bmp"), (".tiff", "image/tiff")],
)
def test_truncated_files_are_refused(ext: str, content_type: str) -> None:
    data = _encode(ext, _rgb(64, 64))
    with pytest.raises(BadImageError, match="truncated"):
        decode_image(data[: len(data) // 2], content_type)


def test_tiny_and_huge_encoded_images_are_refused_before_decoding() -> None:
    with pytest.raises(BadImageError, match="too small: 5x4 px"):
        decode_image(_encode(".png", _rgb(4, 5)))
    # A PNG header claiming 20000 x 20000 px: refused from the header, never decoded.
    header = _encode(".png", _rgb(16, 16))
    huge = header[:16] + (20000).to_bytes(4, "big") * 2 + header[24:]
    with pytest.raises(BadImageError, match="too large: 20000x20000 px"):
        decode_image(huge, "image/png")
    jpeg = _encode(".jpg", _rgb(16, 16))
    sof = jpeg.index(b"\xff\xc0")
    huge = jpeg[: sof + 5] + (30000).to_bytes(2, "big") + (9).to_bytes(2, "big") + jpeg[sof + 9 :]
    with pytest.raises(BadImageError, match="too large: 9x30000 px"):
        decode_image(huge, "image/jpeg")


def test_channel_conversion() -> None:
    image = _rgb()
    gray = convert_channels(image, 1)
    expected = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(gray[:, :, 0], expected)
    np.testing.assert_array_equal(convert_channels(gray, 3), np.repeat(gray, 3, axis=2))
    with pytest.raises(ValueError, match="1 or 3"):
        convert_channels(image, 2)


def test_resize_uses_area_when_shrinking_and_batch_resize_matches() -> None:
    image = _rgb(64, 80)
    small = resize_square(image, 32)
    np.testing.assert_array_equal(small, cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA))
    big = resize_square(image[:20, :20], 32)
    np.testing.assert_array_equal(big, cv2.resize(image[:20, :20], (32, 32), interpolation=cv2.INTER_LINEAR))
    rng = np.random.default_rng(0)
    for shape, size in [((600, 28, 28, 1), 32), ((200, 40, 40, 3), 16), ((3, 32, 32, 1), 32)]:
        batch = rng.integers(0, 256, shape, dtype=np.uint8)
        one_by_one = np.stack([resize_square(im, size) for im in batch])
        np.testing.assert_array_equal(resize_batch(batch, size), one_by_one)


def test_prepare_image_is_decode_convert_resize() -> None:
    data = _encode(".png", _rgb(100, 60))
    out = prepare_image(data, "image/png", image_size=32, channels=1)
    assert out.shape == (32, 32, 1) and out.dtype == np.uint8
    assert prepare_image(data, None, image_size=32, channels=3).shape == (32, 32, 3)


def _camera_frame(height: int, width: int) -> np.ndarray:
    """A colour frame with texture and edges, so that decoding at a smaller scale has detail to lose."""
    rng = np.random.default_rng(3)
    noise = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (0, 0), 2)
    image = _rgb(height, width) // 2 + noise // 2
    cv2.rectangle(image, (width // 4, height // 3), (width // 2, height // 2), (255, 255, 255), 3)
    return image


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """The JPEG with an APP1 Exif segment that asks viewers to rotate it (6: a quarter turn)."""
    tiff = b"MM\x00*\x00\x00\x00\x08" + b"\x00\x01" + b"\x01\x12\x00\x03\x00\x00\x00\x01"
    tiff += orientation.to_bytes(2, "big") + b"\x00\x00" + b"\x00\x00\x00\x00"
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


@pytest.mark.parametrize(
    ("channels", "scale"), [(1, cv2.IMREAD_REDUCED_GRAYSCALE_8), (3, cv2.IMREAD_REDUCED_COLOR_4)]
)
def test_large_jpeg_is_decoded_scaled_down_for_the_model(channels: int, scale: int) -> None:
    """A 480x640 frame for a 32 px model is decoded at 1/8 (60x80), for a 96 px model at 1/4, close
    to decoding every pixel and averaging them away."""
    size = 32 if channels == 1 else 96
    data = _encode(".jpg", _camera_frame(480, 640))
    out = prepare_image(data, "image/jpeg", image_size=size, channels=channels)
    scaled = cv2.imdecode(np.frombuffer(data, np.uint8), scale)
    if channels == 3:
        scaled = cv2.cvtColor(scaled, cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(out, resize_square(scaled.reshape(*scaled.shape[:2], channels), size))
    full = resize_square(convert_channels(decode_image(data, "image/jpeg"), channels), size)
    assert np.abs(out.astype(int) - full.astype(int)).mean() < 2


def test_scaled_jpeg_ignores_exif_orientation_and_small_jpeg_decodes_whole() -> None:
    data = _encode(".jpg", _camera_frame(480, 640))
    rotated = _with_exif_orientation(data, 6)
    for size in (32, 300):  # scaled by 1/8; too small to scale (480 < 2 x 300)
        expected = resize_square(convert_channels(decode_image(data), 1), size)
        if size == 300:
            np.testing.assert_array_equal(prepare_image(data, None, image_size=size, channels=1), expected)
        np.testing.assert_array_equal(
            prepare_image(rotated, None, image_size=size, channels=1),
            prepare_image(data, None, image_size=size, channels=1),
        )


def test_model_input_range_layout_and_inverse() -> None:
    batch = np.stack([_rgb(8, 8), np.full((8, 8, 3), 255, np.uint8)])
    batch[0, 0, 0] = 0
    x = to_model_input(batch)
    assert x.dtype == np.float32 and x.shape == (2, 3, 8, 8) and x.flags.c_contiguous
    assert x.min() == -1.0 and x.max() == 1.0
    np.testing.assert_allclose(
        x, (batch.transpose(0, 3, 1, 2) - NORMALIZATION["mean"]) / NORMALIZATION["std"]
    )
    np.testing.assert_array_equal(from_model_output(x), batch)
    with pytest.raises(ValueError, match="uint8"):
        to_model_input(batch.astype(np.float32))
