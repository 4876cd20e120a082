"""Frames from a broken or malicious camera: parsing never raises, never hangs, never decodes a bomb."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings

from agad_stream.stream.frames import Frame, Rejection, parse_frame
from tests.frame_strategies import Record, records

PER_FRAME_S = 2.0  # generous on a busy 2-core machine; a frame takes milliseconds


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(records())
def test_any_record_becomes_a_frame_or_a_rejection_with_a_reason(record: Record) -> None:
    started = time.perf_counter()
    parsed = parse_frame(record, image_size=32, channels=1)
    assert time.perf_counter() - started < PER_FRAME_S
    if isinstance(parsed, Rejection):
        assert parsed.reason and len(parsed.reason) < 300 and parsed.record is record
    else:
        assert isinstance(parsed, Frame) and parsed.image.shape == (32, 32, 1)
