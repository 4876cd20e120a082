"""The scorer worker: poll frames, score micro-batches, publish every outcome, then commit.

One loop, one thread::

    poll ─► parse (Frame | Rejection) ─► batch (max_batch / max_wait_ms) ─► backend
         ─► scores topic, review queue, dead-letter topic ─► wait until all are stored ─► commit

At-least-once: a batch's offsets are committed only after the broker acknowledged every score and
dead letter (``acks=all``) and Redis stored every review item. A crash before the commit replays
the batch; the review queue is idempotent by frame_id, so only the scores topic can see a frame
twice, and only frames after the last commit.

Backpressure: when Kafka or Redis refuses an output, the worker pauses its partitions (it fetches
nothing new), keeps calling ``poll`` so that it stays in the group, and retries only what failed,
with exponential backoff. Nothing is buffered beyond the batch at hand, and nothing is committed
past it.

Rebalance: a rebalance happens only inside ``poll``, so a batch being scored and stored is never
cut by one: it finishes and commits before the next poll. What a rebalance can meet is a batch
still filling up. Partitions the worker keeps stay where they were (kafka-python keeps their
positions), and so do their records in the batch. Records of partitions it loses are dropped
unpublished and uncommitted; the new owner reads them from the committed offset: nothing lost,
nothing scored twice. (kafka-python runs the listener on its IO thread, which must not block, so
the listener only takes notes.) A rebalance during a backpressure stall is the one case that can
duplicate: the batch's outputs may be partly published, and lost partitions are not committed,
so their new owner scores those frames again.

Shutdown (SIGTERM, SIGINT): finish the batch, publish, commit, leave the group.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError, KafkaTimeoutError, RebalanceInProgressError
from kafka.structs import OffsetAndMetadata

from agad_stream.config import Settings
from agad_stream.inference.base import Backend
from agad_stream.preprocess import stack_images, to_model_input
from agad_stream.review.queue import ReviewItem, ReviewQueue
from agad_stream.stream.batcher import Batcher
from agad_stream.stream.frames import Frame, Rejection, dead_letter_headers, parse_frame
from agad_stream.stream.isolation import predict_isolating
from agad_stream.stream.metrics import Metrics
from agad_stream.stream.reload import ModelWatch

log = logging.getLogger(__name__)

IDLE_POLL_MS = 200.0
"""How long an idle worker waits in one poll: also how soon it notices a stop signal."""
BACKOFF_S = (0.1, 10.0)
"""First and longest wait between retries of outputs that failed."""
HEARTBEAT_MS = 1000
"""Longest interval between heartbeats (a third of the session timeout when that is shorter)."""
SEND_WAIT_S = 30.0
"""How long one attempt waits for the broker to acknowledge a batch's records."""


@dataclass
class Outbox:
    """A batch's outputs not yet durable: Kafka records (with their send futures) and review items."""

    records: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = field(
        default_factory=list
    )
    futures: list[Any] = field(default_factory=list)
    reviews: list[ReviewItem] = field(default_factory=list)

    def empty(self) -> bool:
        return not self.records and not self.reviews


class Worker(ConsumerRebalanceListener):
    """A scorer process's loop; ``backend`` serves ``model_dir``, ``backend_loader`` loads another."""

    def __init__(
        self,
        settings: Settings,
        model_dir: Path,
        backend: Backend,
        backend_loader: Callable[[Path], Backend],
        *,
        watch: ModelWatch | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.topics = settings.kafka.topics
        self.model_dir = model_dir
        self.backend = backend
        self.load_backend = backend_loader
        self.watch = watch
        self.metrics = metrics or Metrics()
        scorer = settings.scorer
        self.batcher: Batcher[Any] = Batcher(scorer.max_batch, scorer.max_wait_ms)
        options = settings.kafka.client_options()
        self.consumer = KafkaConsumer(
            **options,
            group_id=settings.kafka.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=scorer.max_batch,
            **settings.kafka.consumer_size_options(),
            session_timeout_ms=scorer.session_timeout_ms,
            # Members learn of a rebalance on their next heartbeat; every commit waits until then.
            heartbeat_interval_ms=min(max(scorer.session_timeout_ms // 3, 100), HEARTBEAT_MS),
        )
        self.producer = KafkaProducer(
            **options,
            **settings.kafka.producer_size_options(),  # dead letters carry whole frames
            acks="all",
            linger_ms=2,
            delivery_timeout_ms=int(SEND_WAIT_S * 1000) + 5000,
        )
        self.redis = redis.Redis.from_url(
            settings.redis.url, **settings.redis.client_options(), socket_timeout=5, socket_connect_timeout=5
        )
        self.review = ReviewQueue(self.redis, settings.redis.key_prefix)
        self.stopping = threading.Event()
        self._stalled = False  # pausing partitions for backpressure: new assignments start paused too
        self._revoked: set[TopicPartition] = set()  # in the rebalance under way
        self._lost: set[TopicPartition] = set()  # revoked and not assigned back, since the batch began
        self._uncommitted: dict[TopicPartition, OffsetAndMetadata] = {}  # stored, commit refused so far
        self._lag: dict[TopicPartition, int] = {}
        self.totals = {"scored": 0, "flagged": 0, "dead_lettered": 0}
        self.threshold = self._use_threshold()
        self._canary = self._grey_frame()  # a frame the backend scores; replaced by each scored one

    # --- lifecycle ----------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT ask the loop to finish its batch and stop."""

        def stop(signum: int, _frame: FrameType | None) -> None:
            log.info("%s received: finishing the batch, then leaving the group", signal.Signals(signum).name)
            self.stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def run(self) -> None:
        """Serve until :attr:`stopping` is set; then finish the batch, commit and leave the group."""
        self.review.ensure_group()
        self.consumer.subscribe([self.topics.frames], listener=self)
        # Fetch metadata after subscribing and before joining. A group leader that joins without
        # the subscribed topic's metadata assigns the partitions, then sees the metadata change
        # and starts a second rebalance, which stalls every member's commits until all have
        # heard of it on a heartbeat. A member without the partitions would be assigned nothing.
        self.consumer.topics()
        log.info(
            "scoring %s with model %s (%s %s), batches of up to %d frames or %.0f ms",
            self.topics.frames,
            self.backend.card.model_version,
            self.backend.name,
            self.backend.details,
            self.batcher.max_batch,
            self.batcher.max_wait_s * 1000,
        )
        try:
            while not self.stopping.is_set():
                if not len(self.batcher):
                    self._maybe_reload()
                wanted, wait_ms = self.batcher.poll_budget(IDLE_POLL_MS)
                polled = self.consumer.poll(timeout_ms=wait_ms, max_records=wanted)
                if not polled and not self.consumer.assignment():
                    time.sleep(IDLE_POLL_MS / 1000)  # poll returns at once without partitions
                self._drop_lost()
                self._flush_commits()
                for records in polled.values():
                    self.batcher.add(records)
                if self.batcher.ready():
                    self._process(self.batcher.take())
            self._process(self.batcher.take())
            self._finish_commits()
        finally:
            self.close()
        log.info(
            "stopped: %d frames scored, %d flagged, %d dead-lettered",
            self.totals["scored"],
            self.totals["flagged"],
            self.totals["dead_lettered"],
        )

    def close(self) -> None:
        """Leave the group and release the clients (idempotent)."""
        try:
            self.consumer.close(autocommit=False)
        finally:
            self.producer.close(timeout=10)
            self.redis.close()
            if self.watch is not None:
                self.watch.close()

    # --- rebalance listener -------------------------------------------------------------------

    def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        self._revoked = set(revoked)

    def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        self._lost |= self._revoked - set(assigned)
        self._revoked = set()
        for tp in self._lost:
            self._lag.pop(tp, None)
        if self._stalled and assigned:
            self.consumer.pause(*assigned)  # still stalled: take nothing new yet
        log.info("assigned partitions %s", sorted(tp.partition for tp in assigned))

    def _drop_lost(self) -> None:
        """Forget polled, unprocessed records of partitions a rebalance gave to another worker."""
        if not self._lost:
            return
        lost, self._lost = self._lost, set()
        for tp in lost & set(self._uncommitted):
            del self._uncommitted[tp]
            log.warning(
                "partition %d moved before its commit; its new owner scores its last frames again",
                tp.partition,
            )
        dropped = self.batcher.discard(lambda r: TopicPartition(r.topic, r.partition) in lost)
        if dropped:
            log.info("rebalance: dropped %d polled frames of partitions now owned elsewhere", dropped)

    # --- one batch ----------------------------------------------------------------------------

    def _process(self, records: list[Any]) -> None:
        """Score ``records``, store every output, then commit them; see the module docstring."""
        if not records:
            return
        self._lost.clear()
        card = self.backend.card
        size, channels = card.input.image_size, card.input.channels
        parsed = [parse_frame(record, image_size=size, channels=channels) for record in records]
        frames = [p for p in parsed if isinstance(p, Frame)]
        rejected = [p for p in parsed if isinstance(p, Rejection)]
        outbox = Outbox()
        flagged = 0
        if frames:
            frames, failed, flagged = self._score(frames, outbox)
            rejected += failed
        for rejection in rejected:
            log.warning(
                "dead letter %s:%d:%d: %s",
                rejection.record.topic,
                rejection.record.partition,
                rejection.record.offset,
                rejection.reason,
            )
            record = rejection.record
            headers = [*(record.headers or []), *dead_letter_headers(record, rejection.reason)]
            outbox.records.append((self.topics.dead_letter, record.key, record.value, headers))
        if not self._deliver(outbox):
            log.warning(
                "stopped with %d frames of a batch uncommitted; they will be scored again", len(records)
            )
            return
        self._commit([r for r in records if TopicPartition(r.topic, r.partition) not in self._lost])
        now_ms = time.time() * 1000.0
        for frame in frames:
            self.metrics.end_to_end_seconds.observe(max(now_ms - frame.ts_ms, 0.0) / 1000.0)
        self.metrics.batch_size.observe(len(records))
        self.metrics.scored.inc(len(frames))
        self.metrics.flagged.inc(flagged)
        self.metrics.dead_lettered.inc(len(rejected))
        self.totals["scored"] += len(frames)
        self.totals["flagged"] += flagged
        self.totals["dead_lettered"] += len(rejected)

    def _score(self, frames: list[Frame], outbox: Outbox) -> tuple[list[Frame], list[Rejection], int]:
        """Run the backend; queue a score record for every frame it scores and a review item for the
        flagged. Returns (frames scored, rejections of frames the backend failed on, flagged count)."""
        batch = to_model_input(stack_images([f.image for f in frames]))
        started = time.perf_counter()
        isolated = predict_isolating(self._predict, batch, self._canary)
        self.metrics.inference_seconds.observe(time.perf_counter() - started)
        failed = [Rejection(frames[i].record, reason) for i, reason in sorted(isolated.failures.items())]
        if isolated.scored:
            self._canary = batch[isolated.scored[:1]].copy()
        frames = [frames[i] for i in isolated.scored]
        scores, heatmaps = isolated.scores, isolated.heatmaps
        card = self.backend.card
        threshold = self.threshold
        now_ms = time.time() * 1000.0
        flagged = 0
        for frame, score, heatmap in zip(frames, scores.tolist(), heatmaps, strict=True):
            is_anomaly = score >= threshold
            value = {
                "frame_id": frame.frame_id,
                "camera_id": frame.camera_id,
                "ts_ms": frame.ts_ms,
                "score": score,
                "threshold": threshold,
                "is_anomaly": is_anomaly,
                "model_version": card.model_version,
                "latency_ms": round(now_ms - frame.ts_ms, 3),
            }
            outbox.records.append(
                (self.topics.scores, frame.camera_id.encode(), json.dumps(value).encode(), [])
            )
            if is_anomaly:
                flagged += 1
                outbox.reviews.append(
                    ReviewItem(
                        frame_id=frame.frame_id,
                        camera_id=frame.camera_id,
                        ts_ms=frame.ts_ms,
                        score=score,
                        threshold=threshold,
                        model_version=card.model_version,
                        image=bytes(frame.record.value),
                        content_type=frame.content_type,
                        heatmap=np.asarray(heatmap),
                    )
                )
        return frames, failed, flagged

    def _predict(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores, heatmaps = self.backend.predict(batch)
        if heatmaps is None:
            raise RuntimeError(f"backend {self.backend.name} returned no heat-maps")
        return scores, heatmaps

    def _deliver(self, outbox: Outbox) -> bool:
        """Store the outbox, retrying what fails; False when asked to stop before it was all stored.

        While it waits it pauses the partitions and keeps polling, so the worker stays in its group
        however long Kafka or Redis is away, and fetches nothing it could not store.
        """
        delay = BACKOFF_S[0]
        try:
            while True:
                self._attempt(outbox)
                if outbox.empty():
                    return True
                if self.stopping.is_set() and self._stalled:
                    return False
                if not self._stalled:
                    self.metrics.stalls.inc()
                    log.warning("outputs not stored; pausing intake and retrying with backoff")
                    self.consumer.pause(*self.consumer.assignment())
                    self._stalled = True
                self._poll_without_taking(delay * 1000)
                delay = min(delay * 2, BACKOFF_S[1])
        finally:
            if self._stalled:
                self._stalled = False
                self.consumer.resume(*self.consumer.paused())
                log.info("intake resumed")

    def _attempt(self, outbox: Outbox) -> None:
        """One try at every pending output; what succeeded leaves the outbox."""
        try:
            self.review.add(outbox.reviews)
            outbox.reviews = []
        except (redis.RedisError, OSError) as exc:
            log.warning("review queue unavailable: %s", exc)
        if not outbox.records:
            return
        if not outbox.futures:
            outbox.futures = [None] * len(outbox.records)
        for i, (topic, key, value, headers) in enumerate(outbox.records):
            if outbox.futures[i] is None:
                try:
                    outbox.futures[i] = self.producer.send(topic, key=key, value=value, headers=headers)
                except KafkaError as exc:
                    log.warning("cannot send to %s: %s", topic, exc)
                    break
        try:
            self.producer.flush(timeout=SEND_WAIT_S)
        except KafkaError as exc:
            log.warning("broker did not acknowledge the batch in %.0f s: %s", SEND_WAIT_S, exc)
        keep = []
        for record, future in zip(outbox.records, outbox.futures, strict=True):
            if future is not None and future.is_done and future.succeeded():
                continue
            if future is not None and future.is_done:
                log.warning("send to %s failed: %s", record[0], future.exception)
                future = None  # failed for good: send it again
            keep.append((record, future))
        outbox.records = [record for record, _ in keep]
        outbox.futures = [future for _, future in keep]

    def _commit(self, records: list[Any]) -> None:
        """Commit past ``records``; during a rebalance the commit waits for the next poll."""
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            if tp not in self._uncommitted or self._uncommitted[tp].offset <= record.offset:
                self._uncommitted[tp] = OffsetAndMetadata(record.offset + 1, "", -1)
        self._flush_commits()

    def _finish_commits(self) -> None:
        """Before leaving: commit what is stored, polling (paused) through a rebalance under way.

        Gives up after the session timeout: the new owners then score the uncommitted frames again.
        """
        deadline = time.monotonic() + self.settings.scorer.session_timeout_ms / 1000
        self._flush_commits()
        if self._uncommitted:
            self.consumer.pause(*self.consumer.assignment())
        while self._uncommitted and time.monotonic() < deadline:
            self._poll_without_taking(IDLE_POLL_MS)
            self._drop_lost()
            self._flush_commits()
        if self._uncommitted:
            log.warning(
                "leaving with %d partitions' offsets uncommitted; their last frames will be scored again",
                len(self._uncommitted),
            )

    def _poll_without_taking(self, timeout_ms: float) -> None:
        """Poll to stay in the group while paused; records of a racing assignment are read later."""
        for tp, records in self.consumer.poll(timeout_ms=timeout_ms).items():
            self.consumer.seek(tp, records[0].offset)

    def _flush_commits(self) -> None:
        if not self._uncommitted:
            return
        try:
            self.consumer.commit(dict(self._uncommitted), timeout_ms=int(SEND_WAIT_S * 1000))
        except (CommitFailedError, RebalanceInProgressError, KafkaTimeoutError) as exc:
            log.info("commit postponed to after the next poll: %s", type(exc).__name__)
            return
        for tp, meta in self._uncommitted.items():
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                self._lag[tp] = max(highwater - meta.offset, 0)
        self._uncommitted.clear()
        self.metrics.consumer_lag.set(sum(self._lag.values()))

    # --- hot reload ---------------------------------------------------------------------------

    def _maybe_reload(self) -> None:
        if self.watch is None:
            return
        directory = self.watch.poll()
        if directory is None or directory.resolve() == self.model_dir.resolve():
            return
        try:
            backend = self.load_backend(directory)
        except Exception as exc:  # any load failure keeps the running model; the log says why
            log.error("cannot load %s, keeping model %s: %s", directory, self.backend.card.model_version, exc)
            return
        log.info(
            "model %s -> %s (%s)", self.backend.card.model_version, backend.card.model_version, directory
        )
        self.model_dir, self.backend = directory, backend
        self.threshold = self._use_threshold()
        self._canary = self._grey_frame()
        self.metrics.reloads.inc()

    def _grey_frame(self) -> np.ndarray:
        size, channels = self.backend.card.input.image_size, self.backend.card.input.channels
        return np.zeros((1, channels, size, size), np.float32)

    def _use_threshold(self) -> float:
        """The threshold for the model being served: the override if set, else the card's; logged."""
        card = self.backend.card
        override = self.settings.scorer.threshold
        if override is None:
            threshold, source = card.threshold.value, f"model.json: {card.threshold.method}"
        else:
            threshold, source = override, "AGAD_SCORER__THRESHOLD or --threshold"
        log.info("model %s flags scores >= %.6g (%s)", card.model_version, threshold, source)
        self.metrics.set_model(card.model_version, threshold)
        return threshold
