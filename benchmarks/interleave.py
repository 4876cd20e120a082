"""The pipeline against the raw backend in alternating windows of one run, so both see the same host.

On a shared machine the host's speed swings by a quarter within a minute, so a raw figure taken
before and after the pipeline's run can be far from what the pipeline had. Here the worker's
backend sits behind a :class:`Gate`: the pipeline runs for a window, the gate closes (the batches
under way finish, then the worker's loop waits at its next ``predict``), the raw backend is timed
for a shorter window on the same session, and the gate opens again.

What the worker does while the gate closes (its last batches' results, the decoding of records
it has already polled) is charged to the pipeline: the settling time after the gate closes counts
as pipeline time, and the raw window starts after it. That errs against the pipeline.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from agad_stream.inference.base import Backend, Prediction
from agad_stream.model.card import ModelCard


class Gate:
    """A backend whose ``predict`` waits while the gate is closed, and that counts the frames it scored."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.name: str = backend.name
        self.card: ModelCard = backend.card
        self.details: dict[str, str] = backend.details
        self.lanes: int = backend.lanes
        self.frames = 0
        self._open = True
        self._in_flight = 0
        self._changed = threading.Condition()

    def predict(self, batch: np.ndarray, *, heatmaps: bool = True) -> Prediction:
        with self._changed:
            self._changed.wait_for(lambda: self._open)
            self._in_flight += 1
        try:
            return self.backend.predict(batch, heatmaps=heatmaps)
        finally:
            with self._changed:
                self._in_flight -= 1
                self.frames += len(batch)
                self._changed.notify_all()

    def close(self) -> None:
        """Hold every later call and wait for the calls under way to return."""
        with self._changed:
            self._open = False
            self._changed.wait_for(lambda: self._in_flight == 0)

    def open(self) -> None:
        with self._changed:
            self._open = True
            self._changed.notify_all()


@dataclass
class Interleaved:
    """Frames/s of the pipeline and of the raw backend over all their windows, and each pair's ratio."""

    pipeline_frames: int = 0
    pipeline_seconds: float = 0.0
    raw_frames: int = 0
    raw_seconds: float = 0.0
    window_ratios: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, float | list[float]]:
        pipeline = self.pipeline_frames / self.pipeline_seconds
        raw = self.raw_frames / self.raw_seconds
        return {
            "pipeline_fps": pipeline,
            "raw_fps": raw,
            "pipeline_vs_raw": pipeline / raw,
            "window_ratios": [round(r, 4) for r in self.window_ratios],
            "median_window_ratio": statistics.median(self.window_ratios),
        }


def interleave(
    gate: Gate,
    raw: Callable[[float], tuple[int, float]],
    done: Callable[[], bool],
    *,
    pipeline_s: float,
    raw_s: float,
    settle_s: float,
) -> Interleaved:
    """Alternate windows of ``pipeline_s`` (the worker scoring through ``gate``) and ``raw_s`` (``raw``
    timing the backend alone: it returns frames and seconds) until ``done()`` or the last pipeline
    window no longer fills its length. The gate is open again when this returns."""
    result = Interleaved()
    try:
        while not done():
            frames, start = gate.frames, time.perf_counter()
            time.sleep(pipeline_s)
            gate.close()
            time.sleep(settle_s)
            seconds, frames = time.perf_counter() - start, gate.frames - frames
            if done():  # the stream ran out inside this window: its rate is not a steady one
                break
            raw_frames, raw_seconds = raw(raw_s)
            gate.open()
            result.pipeline_frames += frames
            result.pipeline_seconds += seconds
            result.raw_frames += raw_frames
            result.raw_seconds += raw_seconds
            result.window_ratios.append((frames / seconds) / (raw_frames / raw_seconds))
    finally:
        gate.open()
    return result
