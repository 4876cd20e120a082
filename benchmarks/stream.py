"""Streaming scorer throughput and latency against the raw backend and a naive per-message loop.

Needs Kafka and Redis (``agad services up``; the AGAD_* settings say where). For each run:

1. raw backend: images/s of ``backend.predict`` on prepared batches of ``--batch`` frames, from
   one thread per lane of the backend (``--lanes``), measured just before and just after step 2
   (the mean of the two is ``raw_backend_fps``);
2. pipeline capacity: ``--frames`` JPEG frames are produced first, then an in-process
   :class:`~agad_stream.stream.worker.Worker` (max_batch = ``--batch``) scores them; frames/s over
   the last 90 % of them (start-up excluded), the worker's profile of that run
   (``capacity_profile_ms``: mean batch size and ms per step), and how many cores each kind of
   thread kept busy meanwhile (``capacity_cpu_cores``; ``raw_backend_cpu_cores`` for step 1), and
   the broker, Redis (when ``agad services`` runs them here) and the whole machine
   (``capacity_machine_cores``; ``raw_backend_machine_cores``);
   then the same in alternating windows (:mod:`benchmarks.interleave`): the worker scores for 3 s,
   its backend is gated and the raw backend timed for 1 s, and again, so that both see the host
   at the same speed (``pipeline_vs_raw_interleaved``, and each window pair's ratio);
3. pipeline latency: frames sent at half that capacity for ``--seconds``; end-to-end latency is
   the time from the frame's ts_ms (set at send) to its score record arriving at a consumer; the
   worker's own metrics say where that time went (``profile_ms``: mean ms per step of the path),
   and ``p50_vs_bound`` compares the p50 with ``max_wait_ms`` + 2 × the mean batch inference
   (``p99_vs_bound``: the p99 with three times that);
4. the same two numbers for a naive loop: one message at a time, decode, predict (batch 1),
   publish and wait for the broker, queue if flagged, commit.

Every run uses fresh topics and consumer groups. Results: benchmarks/results/stream/<name>.json.

    python benchmarks/stream.py --size 64 --batch 32 --runs 3
    python benchmarks/stream.py --size 64 --batch 32 --runs 3 --lanes 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import redis
import torch
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agad_stream.config import Settings, TopicSettings, load_settings
from agad_stream.inference import load_backend
from agad_stream.inference.base import Backend
from agad_stream.inference.bench import synthetic_frame
from agad_stream.model.artifact import save_model
from agad_stream.model.card import InputSpec, ModelCard, Threshold
from agad_stream.model.generator import build_generator
from agad_stream.preprocess import prepare_image, stack_images, to_model_input
from agad_stream.review.queue import ReviewItem, ReviewQueue
from agad_stream.stream.clients import connect
from agad_stream.stream.frames import Frame, parse_frame
from agad_stream.stream.metrics import STAGES
from agad_stream.stream.simulator import frame_headers
from agad_stream.stream.worker import Worker
from benchmarks.common import write_result
from benchmarks.interleave import Gate, interleave
from benchmarks.thread_cpu import MachineCpu, ThreadCpu
from deploy.onnx_export import export_onnx
from deploy.services.manager import status
from deploy.services.settings import load_services_settings

PARTITIONS = 4
DISTINCT = 50
PIPELINE_WINDOW_S = 3.0
RAW_WINDOW_S = 1.0
SETTLE_S = 0.05
"""The interleaved stage's windows: the pipeline's, the raw backend's, and the time the worker gets
to finish what it holds when its backend is gated (counted as pipeline time)."""
WINDOWS = 6
STALL_S = 120.0
"""A runner that scores nothing, or does not stop, for this long has hung: the benchmark fails
instead of waiting forever."""


def make_model(directory: Path, size: int) -> Path:
    """A randomly initialised naive generator at ``size`` px grey, exported to ONNX."""
    torch.manual_seed(0)
    card = ModelCard(
        model_version=f"bench-naive-{size}",
        generator="naive",
        input=InputSpec(image_size=size, channels=1, colour="gray"),
        threshold=Threshold(value=1e30, method="never flags: the benchmark measures scoring"),
    )
    save_model(directory, card, build_generator("naive", size, 1).state_dict())
    export_onnx(directory)
    return directory


def frames(size: int) -> list[bytes]:
    """Distinct camera-like JPEG frames at twice the model size (so decoding also resizes)."""
    return [synthetic_frame(2 * size, 2 * size, 1, seed=i) for i in range(DISTINCT)]


def create_topics(settings: Settings, partitions: dict[str, int]) -> None:
    admin = KafkaAdminClient(**settings.kafka.client_options())
    try:
        admin.create_topics([NewTopic(name, count, 1) for name, count in partitions.items()])
        admin.wait_for_topics(list(partitions), timeout_ms=60_000)
    finally:
        admin.close()


def fresh_settings(base: Settings) -> Settings:
    run = uuid.uuid4().hex[:8]
    topics = TopicSettings(
        frames=f"bench-{run}.frames",
        scores=f"bench-{run}.scores",
        dead_letter=f"bench-{run}.dlq",
        labels=f"bench-{run}.labels",
        models=f"bench-{run}.models",
    )
    create_topics(
        base, {topics.frames: PARTITIONS, topics.scores: 2, topics.dead_letter: 1, topics.models: 1}
    )
    kafka = base.kafka.model_copy(update={"topics": topics, "group_id": f"bench-{run}"})
    redis_settings = base.redis.model_copy(update={"key_prefix": f"agad-bench:{run}:"})
    return base.model_copy(update={"kafka": kafka, "redis": redis_settings})


def drop(settings: Settings) -> None:
    topics = settings.kafka.topics
    admin = KafkaAdminClient(**settings.kafka.client_options())
    try:
        admin.delete_topics([topics.frames, topics.scores, topics.dead_letter, topics.models])
        admin.delete_groups([settings.kafka.group_id])
    finally:
        admin.close()
    client = redis.Redis.from_url(settings.redis.url, **settings.redis.client_options())
    keys = list(client.scan_iter(match=settings.redis.key_prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def send(settings: Settings, values: list[bytes], count: int, rate: float | None) -> None:
    """``count`` frames over 4 cameras at ``rate`` frames/s (None: at once); ts_ms is the send time."""
    producer = KafkaProducer(**settings.kafka.client_options(), acks="all", linger_ms=5)
    start = time.monotonic()
    for i in range(count):
        if rate:
            wait = start + i / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        camera = f"cam-{i % 4:02d}"
        headers = frame_headers(f"{camera}-{i:07d}", camera, int(time.time() * 1000), "image/jpeg")
        producer.send(
            settings.kafka.topics.frames, key=camera.encode(), value=values[i % len(values)], headers=headers
        )
    producer.flush()
    producer.close()


def raw_batch(backend: Backend, values: list[bytes], batch: int) -> np.ndarray:
    """A prepared batch of ``batch`` frames, as the worker hands it to the backend; warms it up."""
    card = backend.card
    images = [prepare_image(v, "image/jpeg", image_size=card.input.image_size, channels=1) for v in values]
    inputs = to_model_input(stack_images([images[i % len(images)] for i in range(batch)]))
    for _ in range(3):
        backend.predict(inputs)
    return inputs


def raw_frames(backend: Backend, inputs: np.ndarray, seconds: float) -> tuple[int, float]:
    """Frames and seconds of ``backend.predict`` on ``inputs`` for about ``seconds``, called from as
    many threads as it has lanes (the most the worker asks of it)."""
    calls = [0] * backend.lanes
    start = time.perf_counter()

    def call(lane: int) -> None:
        while time.perf_counter() - start < seconds:
            backend.predict(inputs)
            calls[lane] += 1

    callers = [
        threading.Thread(target=call, args=(lane,), name=f"raw caller_{lane}")
        for lane in range(backend.lanes)
    ]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    return sum(calls) * len(inputs), time.perf_counter() - start


def raw_throughput(backend: Backend, inputs: np.ndarray, seconds: float = 3.0) -> float:
    """Images/s of ``backend.predict`` on the prepared batch ``inputs``."""
    frames, elapsed = raw_frames(backend, inputs, seconds)
    return frames / elapsed


def interleaved_capacity(
    base: Settings, model: Path, backend: Backend, values: list[bytes], inputs: np.ndarray, fps: float
) -> dict[str, Any]:
    """The pipeline against the raw backend in alternating windows (:mod:`benchmarks.interleave`),
    on enough pre-produced frames for about WINDOWS pipeline windows at ``fps``."""
    # One window to spare, and the first tenth of the frames for start-up, which is not timed.
    total = int(fps * PIPELINE_WINDOW_S * (WINDOWS + 1) / 0.9)
    gate = Gate(backend)
    settings = fresh_settings(base)
    try:
        send(settings, values, total, None)
        pipeline = Pipeline(settings, model, gate)
        pipeline.start()
        try:
            wait_until_scored(pipeline, total // 10, total)
            windows = interleave(
                gate,
                lambda seconds: raw_frames(backend, inputs, seconds),
                lambda: gate.frames >= total,
                pipeline_s=PIPELINE_WINDOW_S,
                raw_s=RAW_WINDOW_S,
                settle_s=SETTLE_S,
            )
            wait_until_scored(pipeline, total, total)
        finally:
            pipeline.stop()
    finally:
        drop(settings)
    return {"frames": total, **windows.as_dict()}


def joined(thread: threading.Thread) -> None:
    """Wait for a runner's thread to stop, at most STALL_S: a hung runner fails the benchmark (its
    thread is a daemon, so it does not keep the process either)."""
    thread.join(timeout=STALL_S)
    if thread.is_alive():
        raise RuntimeError(f"the {thread.name} thread did not stop in {STALL_S:.0f} s")


class Pipeline:
    """The real worker, in a thread."""

    def __init__(self, settings: Settings, model: Path, backend: Backend) -> None:
        self.worker = Worker(settings, model, backend, lambda d: backend, connect(settings))
        self.thread = threading.Thread(target=self.worker.run, name="worker loop", daemon=True)

    def scored(self) -> int:
        return self.worker.totals["scored"]

    def profile_ms(self) -> dict[str, float]:
        """Mean ms of each step of a frame's path, from the worker's metrics (whole run)."""
        registry = self.worker.metrics.registry

        def mean(name: str, labels: dict[str, str] | None = None, scale: float = 1000.0) -> float:
            total = registry.get_sample_value(f"{name}_sum", labels or {}) or 0.0
            count = registry.get_sample_value(f"{name}_count", labels or {}) or 0.0
            return scale * total / max(count, 1.0)

        profile = {stage: mean("agad_stage_seconds", {"stage": stage}) for stage in STAGES}
        profile["infer"] = mean("agad_inference_seconds")
        profile["end_to_end"] = mean("agad_end_to_end_seconds")
        profile["batch_frames"] = mean("agad_batch_size", scale=1.0)
        return profile

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.worker.stopping.set()
        joined(self.thread)


class NaiveLoop:
    """The baseline: each message on its own, every side effect awaited before the next."""

    def __init__(self, settings: Settings, backend: Backend) -> None:
        self.settings, self.backend = settings, backend
        options = settings.kafka.client_options()
        self.consumer = KafkaConsumer(
            settings.kafka.topics.frames,
            **options,
            group_id=settings.kafka.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=1,
        )
        self.producer = KafkaProducer(**options, acks="all")
        self.review = ReviewQueue(redis.Redis.from_url(settings.redis.url), settings.redis.key_prefix)
        self.count = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, name="naive loop", daemon=True)

    def scored(self) -> int:
        return self.count

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        joined(self.thread)

    def run(self) -> None:
        card = self.backend.card
        while not self.stopping.is_set():
            for records in self.consumer.poll(timeout_ms=100).values():
                for record in records:
                    frame = parse_frame(record, image_size=card.input.image_size, channels=1)
                    assert isinstance(frame, Frame)
                    scores, maps = self.backend.predict(to_model_input(frame.image[None]))
                    score = float(scores[0])
                    value = {
                        "frame_id": frame.frame_id,
                        "camera_id": frame.camera_id,
                        "ts_ms": frame.ts_ms,
                        "score": score,
                        "threshold": card.threshold.value,
                        "is_anomaly": False,
                        "model_version": card.model_version,
                        "latency_ms": 0.0,
                    }
                    self.producer.send(
                        self.settings.kafka.topics.scores,
                        key=frame.camera_id.encode(),
                        value=json.dumps(value).encode(),
                    ).get(timeout=30)
                    if score >= card.threshold.value:
                        assert maps is not None
                        self.review.add(
                            [
                                ReviewItem(
                                    frame.frame_id,
                                    frame.camera_id,
                                    frame.ts_ms,
                                    score,
                                    card.threshold.value,
                                    card.model_version,
                                    bytes(record.value),
                                    frame.content_type,
                                    maps[0],
                                )
                            ]
                        )
                    tp = TopicPartition(record.topic, record.partition)
                    self.consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})
                    self.count += 1
        self.consumer.close(autocommit=False)
        self.producer.close()


def capacity(runner: Pipeline | NaiveLoop, total: int) -> float:
    """Frames/s over the last 90 % of ``total`` pre-produced frames. Raises when the runner's thread
    dies or it scores nothing for STALL_S."""
    runner.start()
    try:
        wait_until_scored(runner, total // 10, total)
        t0, n0 = time.perf_counter(), runner.scored()
        wait_until_scored(runner, total, total)
        return (runner.scored() - n0) / (time.perf_counter() - t0)
    finally:
        runner.stop()


def wait_until_scored(runner: Pipeline | NaiveLoop, count: int, total: int) -> None:
    last, since = runner.scored(), time.monotonic()
    while (scored := runner.scored()) < count:
        if not runner.thread.is_alive():
            raise RuntimeError(f"the {runner.thread.name} thread died after {scored} of {total} frames")
        if scored != last:
            last, since = scored, time.monotonic()
        elif time.monotonic() - since > STALL_S:
            name = runner.thread.name
            raise RuntimeError(f"the {name} thread scored nothing for {STALL_S:.0f} s ({scored} of {total})")
        time.sleep(0.005)


def latencies(
    settings: Settings, runner: Pipeline | NaiveLoop, values: list[bytes], rate: float, seconds: float
) -> dict[str, float]:
    """End-to-end latency (ms) of frames sent at ``rate`` frames/s: send time to score received."""
    count = int(rate * seconds)
    reader = KafkaConsumer(**settings.kafka.client_options(), enable_auto_commit=False)
    topic = settings.kafka.topics.scores
    reader.assign([TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())])
    reader.seek_to_beginning()
    runner.start()
    try:
        sender = threading.Thread(target=send, args=(settings, values, count, rate))
        sender.start()
        got: list[float] = []
        deadline = time.monotonic() + seconds * 4 + 30
        while len(got) < count and time.monotonic() < deadline:
            for records in reader.poll(timeout_ms=50).values():
                now = time.time() * 1000
                got.extend(now - json.loads(r.value)["ts_ms"] for r in records)
        sender.join()
    finally:
        runner.stop()
        reader.close()
    steady = got[len(got) // 10 :]  # skip the first 10 %: start-up
    result: dict[str, Any] = {
        "p50_ms": float(np.percentile(steady, 50)),
        "p99_ms": float(np.percentile(steady, 99)),
        "frames": len(got),
        "sent": count,
    }
    if isinstance(runner, Pipeline):
        result["profile_ms"] = runner.profile_ms()
    return result


def one_run(base: Settings, model: Path, values: list[bytes], args: argparse.Namespace) -> dict[str, Any]:
    backend = load_backend(model, "onnxruntime", lanes=args.lanes)
    scorer = base.scorer.model_copy(
        update={"max_batch": args.batch, "max_wait_ms": args.max_wait_ms, "metrics_port": 0}
    )
    base = base.model_copy(update={"scorer": scorer})
    services = {s.name: s.pid for s in status(load_services_settings()) if s.pid is not None}
    inputs = raw_batch(backend, values, args.batch)
    with ThreadCpu() as raw_cpu, MachineCpu(services) as raw_machine:
        result: dict[str, Any] = {"raw_backend_fps_before": raw_throughput(backend, inputs)}
    result["raw_backend_cpu_cores"] = raw_cpu.cores()
    result["raw_backend_machine_cores"] = raw_machine.cores()
    for name, make in (
        ("pipeline", lambda s: Pipeline(s, model, backend)),
        ("naive", lambda s: NaiveLoop(s, backend)),
    ):
        frames_n = args.frames if name == "pipeline" else args.frames // 4
        settings = fresh_settings(base)
        try:
            send(settings, values, frames_n, None)
            runner = make(settings)
            with ThreadCpu() as cpu, MachineCpu(services) as machine:
                fps = capacity(runner, frames_n)
        finally:
            drop(settings)
        result[name] = {
            "capacity_fps": fps,
            "capacity_cpu_cores": cpu.cores(),
            "capacity_machine_cores": machine.cores(),
        }
        if isinstance(runner, Pipeline):
            result[name]["capacity_profile_ms"] = runner.profile_ms()
            # The machine is shared: the raw figure brackets the pipeline's run, before and after.
            after = result["raw_backend_fps_after"] = raw_throughput(backend, inputs)
            result["raw_backend_fps"] = (result["raw_backend_fps_before"] + after) / 2
            result[name]["interleaved"] = interleaved_capacity(base, model, backend, values, inputs, fps)
        settings = fresh_settings(base)
        try:
            lat = latencies(settings, make(settings), values, fps / 2, args.seconds)
        finally:
            drop(settings)
        result[name]["latency_at_half_capacity"] = lat
    # What a frame should wait at most: its batch's budget, the batch under way's inference and its
    # own; p99 may take three times that.
    pipeline = result["pipeline"]
    latency = pipeline["latency_at_half_capacity"]
    pipeline["latency_bound_ms"] = args.max_wait_ms + 2 * latency["profile_ms"]["infer"]
    pipeline["p50_vs_bound"] = latency["p50_ms"] / pipeline["latency_bound_ms"]
    pipeline["p99_vs_bound"] = latency["p99_ms"] / (3 * pipeline["latency_bound_ms"])
    result["pipeline_vs_raw"] = result["pipeline"]["capacity_fps"] / result["raw_backend_fps"]
    result["naive_vs_raw"] = result["naive"]["capacity_fps"] / result["raw_backend_fps"]
    result["pipeline_vs_raw_interleaved"] = pipeline["interleaved"]["pipeline_vs_raw"]
    print(json.dumps(result))
    return result


def _median_cores(each: list[dict[str, float]]) -> dict[str, float]:
    """Per thread group, the median over runs of the cores it kept busy (0 in a run without it)."""
    groups = {group for cores in each for group in cores}
    medians = {g: round(statistics.median(cores.get(g, 0.0) for cores in each), 3) for g in groups}
    return dict(sorted(medians.items(), key=lambda item: -item[1]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=64, help="model input size in px (default 64)")
    parser.add_argument(
        "--batch", type=int, default=32, help="max_batch of the worker and raw batch (default 32)"
    )
    parser.add_argument("--max-wait-ms", type=float, default=20.0, help="worker's batch latency budget")
    parser.add_argument(
        "--lanes", type=int, default=1, help="ONNX Runtime lanes: batches at once (default 1)"
    )
    parser.add_argument("--frames", type=int, default=3000, help="frames for the pipeline capacity run")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each latency run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--name", help="result file name (default stream-<size>px-b<batch>)")
    args = parser.parse_args()
    base = load_settings()
    with tempfile.TemporaryDirectory() as tmp:
        model = make_model(Path(tmp) / "model", args.size)
        values = frames(args.size)
        runs = [one_run(base, model, values, args) for _ in range(args.runs)]

    def median(path: list[str]) -> float:
        def get(run: dict[str, Any]) -> float:
            value: Any = run
            for key in path:
                value = value[key]
            return float(value)

        return round(statistics.median(get(run) for run in runs), 3)

    summary = {
        "raw_backend_fps": median(["raw_backend_fps"]),
        "pipeline_fps": median(["pipeline", "capacity_fps"]),
        "pipeline_vs_raw": median(["pipeline_vs_raw"]),
        "pipeline_vs_raw_interleaved": median(["pipeline_vs_raw_interleaved"]),
        "pipeline_p50_ms": median(["pipeline", "latency_at_half_capacity", "p50_ms"]),
        "pipeline_p99_ms": median(["pipeline", "latency_at_half_capacity", "p99_ms"]),
        "naive_fps": median(["naive", "capacity_fps"]),
        "naive_vs_raw": median(["naive_vs_raw"]),
        "naive_p50_ms": median(["naive", "latency_at_half_capacity", "p50_ms"]),
        "naive_p99_ms": median(["naive", "latency_at_half_capacity", "p99_ms"]),
        "latency_bound_ms": median(["pipeline", "latency_bound_ms"]),
        "p50_vs_bound": median(["pipeline", "p50_vs_bound"]),
        "p99_vs_bound": median(["pipeline", "p99_vs_bound"]),
        "profile_ms": {
            step: median(["pipeline", "latency_at_half_capacity", "profile_ms", step])
            for step in runs[0]["pipeline"]["latency_at_half_capacity"]["profile_ms"]
        },
        "raw_backend_cpu_cores": _median_cores([run["raw_backend_cpu_cores"] for run in runs]),
        "capacity_cpu_cores": _median_cores([run["pipeline"]["capacity_cpu_cores"] for run in runs]),
        "raw_backend_machine_cores": _median_cores([run["raw_backend_machine_cores"] for run in runs]),
        "capacity_machine_cores": _median_cores([run["pipeline"]["capacity_machine_cores"] for run in runs]),
    }
    print(json.dumps(summary, indent=1))
    settings = {
        "size": args.size,
        "batch": args.batch,
        "max_wait_ms": args.max_wait_ms,
        "lanes": args.lanes,
        "frames": args.frames,
        "seconds": args.seconds,
        "backend": "onnxruntime cpu",
        "frame": f"JPEG {2 * args.size} px grey",
    }
    path = write_result(
        "stream",
        args.name or f"stream-{args.size}px-b{args.batch}" + (f"-l{args.lanes}" if args.lanes > 1 else ""),
        {"settings": settings, "summary": summary, "runs": runs},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
