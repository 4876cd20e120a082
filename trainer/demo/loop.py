"""The whole loop on real data, for ``agad demo`` and ``benchmarks/loop.py``: train, stream, label, retrain.

A :class:`Loop` owns a working folder (its model registry and a cache of base models), topics and
a Redis key prefix of its own on the local services, so that runs never see each other's frames or
labels. Its steps:

1. :meth:`Loop.base_model`: the default trained semi-supervised on a data set (cached by its settings)
   and made the registry's current version;
2. :meth:`Loop.stream`: frames the model never trained on (the data set's test split, the files as
   they are) produced to the frames topic as a few cameras, and every score read back;
3. :meth:`Loop.operate`: a simulated operator keeping up with the line decides flagged frames as
   they come in and answers from the ground truth, through the review code path; short of flagged
   frames it spot-checks random unflagged ones, as an operator would; at most a share of the
   streamed frames gets a label;
4. :meth:`Loop.retrain`: one ``agad retrain`` (:mod:`trainer.retrain.run`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from agad_stream.config import Settings, TopicSettings
from agad_stream.connections import redis_client
from agad_stream.errors import AgadError
from agad_stream.model.registry import set_current
from agad_stream.review.labels import LabelRecord, decided_now, publish
from agad_stream.review.service import reviewing_from
from agad_stream.stream.simulator import encode_frame, frame_headers
from deploy.onnx_export import export_onnx
from deploy.services.settings import ServicesSettings
from deploy.topics import create_topics, topic_specs
from trainer.agad.variant import preset
from trainer.api import TrainConfig, train
from trainer.data import elpv as elpv_data
from trainer.data import load_dataset
from trainer.retrain.run import RetrainConfig, RetrainOutcome, retrain

log = logging.getLogger(__name__)
OPERATOR = "demo-operator"
CAMERAS = 4


@dataclass(frozen=True)
class StreamFrame:
    frame_id: str
    camera_id: str
    value: bytes
    content_type: str
    anomalous: bool


@dataclass
class Scored:
    score: float
    flagged: bool
    model_version: str


@dataclass
class Operated:
    labels: dict[str, bool] = field(default_factory=dict)  # frame_id -> anomalous, as answered
    from_queue: int = 0
    spot_checks: int = 0


@dataclass(frozen=True)
class LoopConfig:
    data: str = "elpv"
    image_size: int = 64
    batch_size: int = 64
    epochs: int = 10
    seed: int = 0
    label_share: float = 0.05  # at most this share of the streamed frames gets a label
    retrain_epochs: int | None = None  # None: as many as the base trained
    max_frames: int | None = None  # stream a random subset of the test split of this size


class Loop:
    """One run of the loop on ``settings``' services, in ``workdir``."""

    def __init__(self, settings: Settings, workdir: Path, config: LoopConfig) -> None:
        self.run_id = uuid.uuid4().hex[:8]
        self.config = config
        self.workdir = workdir
        self.registry = workdir / f"registry-{self.run_id}"
        names = {name: f"agad-loop-{self.run_id}.{name}" for name in ("frames", "scores", "labels", "models")}
        topics = TopicSettings(**names, dead_letter=f"agad-loop-{self.run_id}.frames.dlq")
        kafka = settings.kafka.model_copy(update={"topics": topics, "group_id": f"agad-loop-{self.run_id}"})
        redis = settings.redis.model_copy(update={"key_prefix": f"agad-loop:{self.run_id}:"})
        self.settings = settings.model_copy(
            update={"kafka": kafka, "redis": redis, "registry": self.registry}
        )

    # --- set-up and tear-down -----------------------------------------------------------------

    def open(self) -> None:
        self.registry.mkdir(parents=True, exist_ok=True)
        create_topics(self.settings.kafka)

    def close(self) -> None:
        """Delete this run's topics, consumer group and Redis keys (the registry folder stays)."""
        kafka = self.settings.kafka
        admin = KafkaAdminClient(**kafka.client_options())
        try:
            admin.delete_topics([spec.name for spec in topic_specs(kafka)])
            admin.delete_groups([kafka.group_id])
        except Exception as exc:  # tidying up; the broker may already be gone
            log.warning("could not delete the loop's topics: %r", exc)
        finally:
            admin.close()
        client = redis_client(self.settings, check=False)
        try:
            keys = list(client.scan_iter(match=self.settings.redis.key_prefix + "*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()

    # --- 1. the model in service ---------------------------------------------------------------

    def base_model(self, progress: bool = True) -> str:
        """The semi-supervised default on the data set, cached; returns its version, now current."""
        c = self.config
        settings_key = json.dumps([c.data, c.image_size, c.batch_size, c.epochs, c.seed])
        key = hashlib.sha256(settings_key.encode()).hexdigest()[:10]
        cached = self.workdir / "cache" / f"base-{key}"
        version = f"base-{key}"
        if not (cached / "model.onnx").is_file():
            log.info("training the base model (%s, %d px, %d epochs; cached)", c.data, c.image_size, c.epochs)
            dataset = load_dataset(c.data, c.image_size, gamma=0, seed=c.seed)
            variant = preset("default", batch_size=c.batch_size)
            config = TrainConfig(variant, epochs=c.epochs, seed=c.seed, model_version=version)
            train(config, dataset, cached, progress=progress)
            export_onnx(cached)
        shutil.copytree(cached, self.registry / version, dirs_exist_ok=True)
        set_current(self.registry, version)
        return version

    def test_frames(self) -> list[StreamFrame]:
        """The data set's headline test images as frames, the files as they are (never trained on)."""
        dataset = load_dataset(self.config.data, self.config.image_size, gamma=0, seed=self.config.seed)
        test = dataset.headline_test()
        root = elpv_data.data_dir() if self.config.data == "elpv" else None
        frames = []
        for n, (image_id, label) in enumerate(zip(test.ids, test.labels.tolist(), strict=True)):
            if root is not None:
                value, content_type = (root / image_id).read_bytes(), "image/png"
            else:
                value, content_type = encode_frame(test.images[n], "png")
            frame_id, camera = f"{self.run_id}-{n:05d}", f"cam-{n % CAMERAS:02d}"
            frames.append(StreamFrame(frame_id, camera, value, content_type, bool(label)))
        random.Random(self.config.seed).shuffle(frames)
        return frames[: self.config.max_frames]

    # --- 2. the line ---------------------------------------------------------------------------

    def stream(self, frames: list[StreamFrame], timeout_s: float = 900) -> dict[str, Scored]:
        """Send ``frames`` and wait for their scores (a scorer serving this loop's settings must run)."""
        kafka = self.settings.kafka
        producer = KafkaProducer(**kafka.client_options(), **kafka.producer_size_options(), acks="all")
        try:
            for frame in frames:
                now_ms = int(time.time() * 1000)
                headers = frame_headers(frame.frame_id, frame.camera_id, now_ms, frame.content_type)
                producer.send(
                    kafka.topics.frames, key=frame.camera_id.encode(), value=frame.value, headers=headers
                )
            producer.flush()
        finally:
            producer.close(timeout=30)
        wanted = {frame.frame_id for frame in frames}
        scored: dict[str, Scored] = {}
        for record in self._read(self.settings.kafka.topics.scores, timeout_s, lambda: wanted <= set(scored)):
            value = json.loads(record.value)
            if value["frame_id"] in wanted:
                scored[value["frame_id"]] = Scored(
                    value["score"], value["is_anomaly"], value["model_version"]
                )
        return scored

    def _read(self, topic: str, timeout_s: float, done: Callable[[], bool]) -> Iterator[Any]:
        consumer = KafkaConsumer(**self.settings.kafka.client_options(), enable_auto_commit=False)
        try:
            partitions = [
                TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            deadline = time.monotonic() + timeout_s
            while not done():
                if time.monotonic() > deadline:
                    raise AgadError(
                        f"timed out after {timeout_s:.0f} s waiting for the streamed frames' scores"
                    )
                for records in consumer.poll(timeout_ms=500).values():
                    yield from records
        finally:
            consumer.close(autocommit=False)

    # --- 3. the operator -----------------------------------------------------------------------

    def operate(self, frames: list[StreamFrame], scored: dict[str, Scored]) -> Operated:
        """Label at most ``label_share`` of ``frames``: the queue first, then spot checks."""
        budget = max(1, int(self.config.label_share * len(frames)))
        truth = {frame.frame_id: frame for frame in frames}
        done = Operated()
        client = redis_client(self.settings)
        reviewing = reviewing_from(self.settings, client)
        try:
            deadline = time.monotonic() + 120
            flagged = sum(1 for s in scored.values() if s.flagged)
            while reviewing.store.counts().pending < min(flagged, 1) and time.monotonic() < deadline:
                reviewing.refresh()
                time.sleep(0.2)
            reviewing.refresh()
            # An operator keeping up with the line decides flagged frames as they come in.
            for summary in sorted(reviewing.store.pending(), key=lambda item: item.flagged_ms):
                if len(done.labels) >= budget:
                    break
                frame = truth.get(summary.frame_id)
                if frame is None:
                    continue
                reviewing.decide(frame.frame_id, OPERATOR, "anomaly" if frame.anomalous else "normal")
                done.labels[frame.frame_id] = frame.anomalous
                done.from_queue += 1
            unflagged = [f for f in frames if f.frame_id in scored and not scored[f.frame_id].flagged]
            random.Random(self.config.seed).shuffle(unflagged)
            for frame in unflagged[: budget - len(done.labels)]:
                spot_check = self._spot_check(frame, scored[frame.frame_id])
                publish(reviewing.producer, self.settings.kafka.topics.labels, spot_check)
                done.labels[frame.frame_id] = frame.anomalous
                done.spot_checks += 1
        finally:
            reviewing.producer.close(timeout=10)
            client.close()
        return done

    def _spot_check(self, frame: StreamFrame, scored: Scored) -> LabelRecord:
        return LabelRecord(
            frame_id=frame.frame_id,
            camera_id=frame.camera_id,
            ts_ms=int(time.time() * 1000),
            content_type=frame.content_type,
            label="anomaly" if frame.anomalous else "normal",
            defect="",
            reviewer=f"{OPERATOR} (spot check)",
            decided_at=decided_now(),
            model_version=scored.model_version,
            score=scored.score,
            image=frame.value,
        )

    # --- 4. retraining -------------------------------------------------------------------------

    def retrain(self, progress: bool = True) -> RetrainOutcome:
        config = RetrainConfig(
            self.registry, epochs=self.config.retrain_epochs, seed=self.config.seed, progress=progress
        )
        return retrain(self.settings, config)


def precision(frames: list[StreamFrame], scored: dict[str, Scored]) -> float | None:
    """Share of flagged frames that are truly anomalous (None when nothing was flagged)."""
    truth = {frame.frame_id: frame.anomalous for frame in frames}
    flagged = [truth[frame_id] for frame_id, s in scored.items() if s.flagged and frame_id in truth]
    return float(np.mean(flagged)) if flagged else None


@contextmanager
def loop(settings: Settings, workdir: Path, config: LoopConfig) -> Iterator[Loop]:
    run = Loop(settings, workdir, config)
    run.open()
    try:
        yield run
    finally:
        run.close()


def on_local_services(settings: Settings, services: ServicesSettings) -> Settings:
    """``settings`` pointed at the local Kafka and Redis that ``agad services`` runs."""
    kafka = settings.kafka.model_copy(
        update={
            "bootstrap_servers": f"127.0.0.1:{services.kafka_port}",
            "security_protocol": "PLAINTEXT",
            "sasl_mechanism": None,
        }
    )
    redis = settings.redis.model_copy(
        update={"url": f"redis://127.0.0.1:{services.redis_port}/0", "password": None}
    )
    return settings.model_copy(update={"kafka": kafka, "redis": redis})
