"""Inference that survives a frame which breaks the model: find it, keep scoring the rest.

An image can decode cleanly and still make a backend raise (a driver error on one input, a shape
the engine was not built for). Retrying the batch as it is would fail again at every restart, so
:func:`predict_isolating` splits a failing batch in halves until the frames that fail alone are
found; they are returned as failures (for the dead-letter topic) and every other frame is scored.

A backend that fails on everything looks the same from one batch, so when any frame failed alone
the backend is asked once more, about a frame it scored before (the *canary*). If that fails too
the fault is the backend's, not the frames', and :class:`BackendBroken` says so: the worker stops
without committing the batch, rather than dead-letter a whole stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from agad_stream.errors import AgadError

Predict = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""(batch NCHW) -> (scores (N,), heat-maps (N, 1, H, W))."""
MAX_REASON_CHARS = 200


class BackendBroken(AgadError):
    """The backend fails on frames it scored before: nothing it is given can be scored."""


@dataclass
class Isolated:
    """Scores and heat-maps of the frames that scored (by position in the batch), reasons of the rest."""

    scored: list[int]
    scores: np.ndarray
    heatmaps: np.ndarray
    failures: dict[int, str]


def predict_isolating(predict: Predict, batch: np.ndarray, canary: np.ndarray) -> Isolated:
    """Score ``batch``; frames on which ``predict`` fails even alone come back as failures.

    ``canary`` is one model input (1, C, H, W) the backend is known to score; it is tried only when
    some frame failed alone. Raises :class:`BackendBroken` when the canary fails too.
    """
    scored: list[int] = []
    scores: list[np.ndarray] = []
    heatmaps: list[np.ndarray] = []
    failures: dict[int, str] = {}

    def run(start: int, stop: int) -> None:
        try:
            found, maps = predict(batch[start:stop])
        except Exception as exc:  # any backend error: isolate it rather than guess its type
            if stop - start == 1:
                failures[start] = _reason(exc)
                return
            middle = (start + stop) // 2
            run(start, middle)
            run(middle, stop)
            return
        scored.extend(range(start, stop))
        scores.append(np.asarray(found))
        heatmaps.append(np.asarray(maps))

    run(0, len(batch))
    if failures:
        try:
            predict(canary)
        except Exception as exc:
            raise BackendBroken(
                f"the backend failed on {len(failures)} of {len(batch)} frames, and then on a frame it had "
                f"scored before ({_reason(exc)}): the model or its runtime is broken, not the frames; check "
                "the model directory and the GPU driver, then restart"
            ) from exc
    empty = np.zeros((0, *batch.shape[1:]), np.float32)
    return Isolated(
        scored,
        np.concatenate(scores) if scores else np.zeros(0, np.float32),
        np.concatenate(heatmaps) if heatmaps else empty[:, :1],
        failures,
    )


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no message"
    return f"inference failed: {type(exc).__name__}: {text}"[:MAX_REASON_CHARS]
