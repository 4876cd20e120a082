"""Prometheus metrics of a scorer worker, served on ``AGAD_SCORER__METRICS_PORT`` (0: off).

Each worker has its own registry, so several workers in one process (the benchmark, tests) do not
collide, and its own port: run one worker per port, or turn metrics off with 0.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

STAGES = ("fetch", "batch_wait", "decode", "deliver", "commit")
"""The steps of a frame's path that ``agad_stage_seconds`` times (inference has its own histogram)."""
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The counters, histograms and gauges of DESIGN.md's runtime requirements."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.scored = Counter("agad_frames_scored", "frames scored and published", registry=r)
        self.flagged = Counter("agad_frames_flagged", "frames at or above the threshold", registry=r)
        self.dead_lettered = Counter(
            "agad_frames_dead_lettered", "frames sent to the dead-letter topic", registry=r
        )
        self.batch_size = Histogram(
            "agad_batch_size",
            "frames per micro-batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=r,
        )
        self.inference_seconds = Histogram(
            "agad_inference_seconds", "backend predict time per batch", buckets=LATENCY_BUCKETS, registry=r
        )
        self.end_to_end_seconds = Histogram(
            "agad_end_to_end_seconds",
            "capture time (ts_ms) to durable score, per frame",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_seconds = Histogram(
            "agad_stage_seconds",
            "time in each step of a frame's path besides inference (agad_inference_seconds): fetch "
            "(capture to polled) and batch_wait (polled to batch closed) per frame; decode (what was "
            "left of it once the batch closed), deliver and commit per batch",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage = {name: self.stage_seconds.labels(name) for name in STAGES}  # looked up once
        self.consumer_lag = Gauge(
            "agad_consumer_lag", "frames behind the end of this worker's partitions", registry=r
        )
        self.model_version = Gauge(
            "agad_model_version", "1 for the model version being served", ["version"], registry=r
        )
        self.threshold = Gauge(
            "agad_threshold", "score at or above which a frame is flagged, for the model served", registry=r
        )
        self.reloads = Counter("agad_model_reloads", "model versions loaded while running", registry=r)
        self.stalls = Counter(
            "agad_backpressure_stalls", "times the worker paused its partitions to retry outputs", registry=r
        )

    def serve(self, port: int) -> None:
        """Serve ``/metrics`` on ``port`` in a daemon thread (not at all when ``port`` is 0)."""
        if port:
            start_http_server(port, registry=self.registry)

    def set_model(self, version: str, threshold: float) -> None:
        self.model_version.clear()
        self.model_version.labels(version=version).set(1)
        self.threshold.set(threshold)
