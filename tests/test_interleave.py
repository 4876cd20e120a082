"""The stream benchmark's gate: the raw backend's windows never overlap the worker's calls."""

from __future__ import annotations

import threading
import time

import numpy as np

from agad_stream.inference.base import Prediction
from agad_stream.model.card import InputSpec, ModelCard, Threshold
from benchmarks.interleave import Gate, interleave


class SlowBackend:
    """Takes ``seconds`` a call and notes when each call ran and who made it."""

    name = "slow"
    lanes = 1

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.details: dict[str, str] = {}
        self.card = ModelCard(
            model_version="slow",
            generator="naive",
            input=InputSpec(image_size=32, channels=1, colour="gray"),
            threshold=Threshold(value=1.0, method="test"),
        )
        self.calls: list[tuple[str, float, float]] = []
        self.release = threading.Event()
        self.release.set()

    def predict(self, batch: np.ndarray, *, heatmaps: bool = True) -> Prediction:
        start = time.perf_counter()
        self.release.wait()
        time.sleep(self.seconds)
        self.calls.append((threading.current_thread().name, start, time.perf_counter()))
        return np.zeros(len(batch), np.float32), None


BATCH = np.zeros((4, 1, 32, 32), np.float32)


def test_close_waits_for_the_call_under_way_and_holds_the_next() -> None:
    backend = SlowBackend(0.0)
    gate = Gate(backend)
    backend.release.clear()
    under_way = threading.Thread(target=gate.predict, args=(BATCH,), name="first")
    under_way.start()
    closer = threading.Thread(target=gate.close)
    closer.start()
    closer.join(timeout=0.2)
    assert closer.is_alive(), "close returned while a call was still under way"
    backend.release.set()
    closer.join(timeout=5)
    assert not closer.is_alive()
    held = threading.Thread(target=gate.predict, args=(BATCH,), name="held")
    held.start()
    held.join(timeout=0.2)
    assert held.is_alive(), "a call went through a closed gate"
    gate.open()
    held.join(timeout=5)
    assert gate.frames == 2 * len(BATCH)


def test_raw_windows_never_overlap_the_pipeline() -> None:
    backend = SlowBackend(0.002)
    gate = Gate(backend)
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            gate.predict(BATCH)

    raw_windows = 0

    def raw(seconds: float) -> tuple[int, float]:
        nonlocal raw_windows
        raw_windows += 1
        start = time.perf_counter()
        frames = 0
        while time.perf_counter() - start < seconds:
            backend.predict(BATCH)
            frames += len(BATCH)
        return frames, time.perf_counter() - start

    thread = threading.Thread(target=worker, name="worker")
    thread.start()
    try:
        result = interleave(gate, raw, lambda: raw_windows == 3, pipeline_s=0.1, raw_s=0.05, settle_s=0.01)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert len(result.window_ratios) == 3
    worker_calls = [(start, end) for who, start, end in backend.calls if who == "worker"]
    raw_calls = [(start, end) for who, start, end in backend.calls if who != "worker"]
    assert worker_calls and raw_calls
    for raw_start, raw_end in raw_calls:
        assert all(end <= raw_start or start >= raw_end for start, end in worker_calls)
    assert result.raw_frames == len(raw_calls) * len(BATCH)
    assert 0 < result.pipeline_frames <= gate.frames
    assert result.pipeline_seconds >= 3 * (0.1 + 0.01)
