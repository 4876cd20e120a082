"""Soak: one `agad serve` process at 80 % of its capacity for ten minutes (or hours); does anything grow?

Needs Kafka and Redis (``agad services up``). The benchmark model of benchmarks/stream.py (64 px,
ONNX Runtime) with a threshold that flags about 2 % of the frames, so the review queue fills too.

1. capacity: ``--frames`` frames are produced first, then a fresh `agad serve` scores them; frames/s
   between its 10th and last score record;
2. soak: fresh topics and a fresh `agad serve`; frames sent at ``--load`` x capacity for
   ``--minutes``. Every ``--every`` seconds: the process's resident memory, the group's lag on the
   frames topic, Redis's used memory, and the p50/p99 end-to-end latency (frame ts_ms to its score
   record) of the scores received in that window.

Fails if a frame is missing from the scores or goes to the dead-letter topic, if the process exits,
or if its resident memory grows more than 10 % above its level after warm-up (the second minute).
Results: benchmarks/results/soak/<name>.json and the plot docs/images/soak.png.

    python benchmarks/soak.py --minutes 10
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.structs import TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agad_stream.config import Settings, load_settings, routing_env
from agad_stream.inference import load_backend
from agad_stream.model.card import CARD, Threshold
from agad_stream.preprocess import prepare_image, stack_images, to_model_input
from benchmarks.common import write_result
from benchmarks.stream import drop, frames, fresh_settings, make_model, send

ROOT = Path(__file__).resolve().parent.parent
PLOT = ROOT / "docs" / "images" / "soak.png"
FLAGGED_SHARE = 0.02


def flag_some(model: Path, values: list[bytes]) -> float:
    """Set the card's threshold so about FLAGGED_SHARE of ``values`` score at or above it."""
    backend = load_backend(model, "onnxruntime")
    size = backend.card.input.image_size
    images = [prepare_image(v, "image/jpeg", image_size=size, channels=1) for v in values]
    scores, _ = backend.predict(to_model_input(stack_images(images)))
    value = float(np.quantile(scores, 1 - FLAGGED_SHARE))
    card = backend.card.model_copy(
        update={"threshold": Threshold(value=value, method=f"soak: top {FLAGGED_SHARE:.0%} of the frames")}
    )
    (model / CARD).write_text(card.model_dump_json(indent=2) + "\n")  # the graph does not hold it
    return value


def serve_env(settings: Settings, **scorer: object) -> dict[str, str]:
    """This process's environment with the run's topics, group and key prefix."""
    env = {
        **os.environ,
        **routing_env(settings),
        "AGAD_SCORER__BACKEND": "onnxruntime",
        "AGAD_SCORER__METRICS_PORT": "0",
    }
    env.update({f"AGAD_SCORER__{name.upper()}": str(value) for name, value in scorer.items()})
    return env


class Serve:
    """`agad serve` as a subprocess, its log in a file."""

    def __init__(self, settings: Settings, model: Path, log: Path, batch: int) -> None:
        agad = shutil.which("agad") or str(Path(sys.executable).with_name("agad"))
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [agad, "serve", "--model", str(model), "--max-batch", str(batch)],
                env=serve_env(settings),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def check(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"agad serve exited ({self.proc.returncode}):\n{tail}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout=120)


class Scores:
    """Reads the scores topic in a thread: per frame id, the latency at arrival."""

    def __init__(self, settings: Settings) -> None:
        self.consumer = KafkaConsumer(**settings.kafka.client_options(), enable_auto_commit=False)
        topic = settings.kafka.topics.scores
        partitions = [
            TopicPartition(topic, p) for p in sorted(self.consumer.partitions_for_topic(topic) or ())
        ]
        self.consumer.assign(partitions)
        self.consumer.seek_to_beginning(*partitions)
        self.arrivals: list[tuple[float, float]] = []  # (monotonic arrival, latency ms)
        self.ids: set[str] = set()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self) -> None:
        while not self.stopping.is_set():
            for records in self.consumer.poll(timeout_ms=100).values():
                now_ms, now = time.time() * 1000, time.monotonic()
                for record in records:
                    value = json.loads(record.value)
                    self.ids.add(value["frame_id"])
                    self.arrivals.append((now, now_ms - value["ts_ms"]))
        self.consumer.close(autocommit=False)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()


def lag(admin: KafkaAdminClient, reader: KafkaConsumer, settings: Settings) -> int:
    """Frames on the frames topic that the group has not committed yet."""
    group = settings.kafka.group_id
    committed = admin.list_group_offsets({group: None})[group]
    topic = settings.kafka.topics.frames
    partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
    ends = reader.end_offsets(partitions)
    return sum(end - (committed[tp].offset if tp in committed else 0) for tp, end in ends.items())


def dead_letters(settings: Settings) -> int:
    reader = KafkaConsumer(**settings.kafka.client_options(), enable_auto_commit=False)
    try:
        topic = settings.kafka.topics.dead_letter
        partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
        return sum(reader.end_offsets(partitions).values())
    finally:
        reader.close()


def capacity(base: Settings, model: Path, values: list[bytes], args: argparse.Namespace, log: Path) -> float:
    settings = fresh_settings(base)
    try:
        send(settings, values, args.frames, None)
        scores = Scores(settings)
        serve = Serve(settings, model, log, args.batch)
        try:
            while len(scores.arrivals) < 10:
                serve.check()
                time.sleep(0.05)
            t0, n0 = scores.arrivals[9][0], 10
            deadline = time.monotonic() + 600
            while len(scores.ids) < args.frames and time.monotonic() < deadline:
                serve.check()
                time.sleep(0.1)
            t1, n1 = scores.arrivals[-1][0], len(scores.arrivals)
        finally:
            serve.stop()
            scores.stop()
        return (n1 - n0) / (t1 - t0)
    finally:
        drop(settings)


def soak(
    base: Settings, model: Path, values: list[bytes], rate: float, args: argparse.Namespace, log: Path
) -> dict[str, Any]:
    settings = fresh_settings(base)
    count = int(rate * args.minutes * 60)
    admin = KafkaAdminClient(**settings.kafka.client_options())
    reader = KafkaConsumer(**settings.kafka.client_options(), enable_auto_commit=False)
    store = redis.Redis.from_url(settings.redis.url, **settings.redis.client_options())
    try:
        scores = Scores(settings)
        serve = Serve(settings, model, log, args.batch)
        sender = threading.Thread(target=send, args=(settings, values, count, rate))
        start = time.monotonic()
        sender.start()
        samples: list[dict[str, float | None]] = []
        seen = 0
        try:
            while sender.is_alive() or (
                len(scores.ids) < count and time.monotonic() - start < args.minutes * 120
            ):
                time.sleep(args.every)
                serve.check()
                window = [latency for _, latency in scores.arrivals[seen:]]
                seen += len(window)
                samples.append(
                    {
                        "t_s": round(time.monotonic() - start, 1),
                        "rss_mb": round(serve.rss_mb(), 1),
                        "lag_frames": lag(admin, reader, settings),
                        "redis_mb": round(int(store.info("memory")["used_memory"]) / 2**20, 1),
                        "scores": len(window),
                        "p50_ms": round(float(np.percentile(window, 50)), 1) if window else None,
                        "p99_ms": round(float(np.percentile(window, 99)), 1) if window else None,
                    }
                )
                print(json.dumps(samples[-1]), flush=True)
            sender.join()
        finally:
            exit_code = serve.stop()
            scores.stop()
        queued = sum(
            1 for _ in store.scan_iter(match=settings.redis.key_prefix + "review:item:*", count=1000)
        )
        return {
            "sent": count,
            "scored": len(scores.ids),
            "dead_letters": dead_letters(settings),
            "review_items": queued,
            "exit_code": exit_code,
            "samples": samples,
        }
    finally:
        reader.close()
        admin.close()
        store.close()
        drop(settings)


def summarise(run: dict[str, Any], minutes: float) -> dict[str, Any]:
    """Levels after warm-up (the second minute) against the rest of the run, and the worst window."""
    samples = run["samples"]
    warm = [s for s in samples if 60 < s["t_s"] <= 120]
    after = [s for s in samples if s["t_s"] > 120]
    last = [s for s in samples if minutes * 60 - 60 < s["t_s"] <= minutes * 60]

    def med(rows: list[dict[str, Any]], key: str) -> float:
        return round(float(np.median([r[key] for r in rows if r[key] is not None])), 1)

    rss_warm = med(warm, "rss_mb")
    rss_max = max(s["rss_mb"] for s in after)
    return {
        "rss_mb_after_warmup": rss_warm,
        "rss_mb_max_later": rss_max,
        "rss_growth": round(rss_max / rss_warm - 1, 3),
        "p50_ms_after_warmup": med(warm, "p50_ms"),
        "p50_ms_last_minute": med(last, "p50_ms"),
        "p99_ms_worst_window": max(s["p99_ms"] for s in samples if s["p99_ms"] is not None),
        "lag_frames_max": max(s["lag_frames"] for s in samples),
        "lag_frames_last_minute": med(last, "lag_frames"),
        "redis_mb_last": samples[-1]["redis_mb"],
    }


def plot(run: dict[str, Any], rate: float, capacity_fps: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    samples = run["samples"]
    minutes = [s["t_s"] / 60 for s in samples]
    figure, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    axes[0].plot(minutes, [s["rss_mb"] for s in samples], label="agad serve RSS")
    axes[0].plot(minutes, [s["redis_mb"] for s in samples], label="Redis used memory")
    axes[0].set_ylabel("MB")
    axes[0].set_ylim(bottom=0)
    axes[0].legend(loc="lower right")
    axes[1].plot(minutes, [s["lag_frames"] for s in samples], color="tab:orange")
    axes[1].set_ylabel("uncommitted frames")
    axes[1].set_ylim(bottom=0)
    for key, style in (("p50_ms", "-"), ("p99_ms", ":")):
        axes[2].plot(minutes, [s[key] for s in samples], style, color="tab:green", label=key[:3])
    axes[2].set_ylabel("end-to-end latency, ms")
    axes[2].set_ylim(bottom=0)
    axes[2].set_xlabel("minutes")
    axes[2].legend(loc="upper right")
    figure.suptitle(
        f"agad serve at {rate:.0f} frames/s ({rate / capacity_fps:.0%} of {capacity_fps:.0f} capacity)"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--load", type=float, default=0.8, help="share of the measured capacity")
    parser.add_argument("--frames", type=int, default=3000, help="frames for the capacity run")
    parser.add_argument("--batch", type=int, default=32, help="the scorer's max batch")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--name", help="result file name (default soak-<minutes>min)")
    args = parser.parse_args()
    base = load_settings()
    with tempfile.TemporaryDirectory() as tmp:
        model = make_model(Path(tmp) / "model", 64)
        values = frames(64)
        threshold = flag_some(model, values)
        capacity_fps = capacity(base, model, values, args, Path(tmp) / "capacity.log")
        rate = args.load * capacity_fps
        print(
            f"capacity {capacity_fps:.0f} frames/s; soaking at {rate:.0f} for {args.minutes:g} min",
            flush=True,
        )
        run = soak(base, model, values, rate, args, Path(tmp) / "soak.log")
    summary = summarise(run, args.minutes)
    failures = [
        what
        for what, bad in (
            (f"{run['sent'] - run['scored']} frames without a score", run["scored"] < run["sent"]),
            (f"{run['dead_letters']} dead letters", run["dead_letters"] > 0),
            (f"agad serve exited with {run['exit_code']}", run["exit_code"] != 0),
            (f"resident memory grew {summary['rss_growth']:.0%} after warm-up", summary["rss_growth"] > 0.1),
        )
        if bad
    ]
    print(json.dumps(summary, indent=1))
    settings = {
        "minutes": args.minutes,
        "load": args.load,
        "batch": args.batch,
        "every_s": args.every,
        "backend": "onnxruntime cpu",
        "model": "benchmarks/stream.py naive generator, 64 px grey",
        "frame": "JPEG 128 px grey",
        "threshold": threshold,
    }
    path = write_result(
        "soak",
        args.name or f"soak-{args.minutes:g}min",
        {"settings": settings, "capacity_fps": round(capacity_fps, 1), "rate_fps": round(rate, 1),
         "summary": summary, "failures": failures, **run},
    )  # fmt: skip
    plot(run, rate, capacity_fps, PLOT)
    print(f"wrote {path} and {PLOT}")
    if failures:
        raise SystemExit("soak failed: " + "; ".join(failures))


if __name__ == "__main__":
    main()
