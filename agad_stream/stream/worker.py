"""The scorer worker: one loop, one way through for every frame::

    poll ─► parse ─► batch ─► infer ─► route ─► deliver ─► commit

- **poll** (:meth:`Worker.run`): records of the frames topic, at most what the batch still wants;
- **parse** (:func:`~agad_stream.stream.frames.parse_frame`): a Frame for the model, or a Rejection;
  started on a small thread pool as soon as a record is polled (OpenCV releases the GIL; a poll's
  records are split into one task per thread), so frames decode while the batch waits for company
  instead of after it closed;
- **batch** (:class:`~agad_stream.stream.batcher.Batcher`): until ``max_batch`` or ``max_wait_ms``;
- **infer** (:func:`~agad_stream.stream.isolation.predict_isolating`): scores and heat-maps; a frame
  that breaks the backend becomes a Rejection. It runs on a model thread (ONNX Runtime, torch and
  TensorRT release the GIL), one per lane of the backend (``Backend.lanes``, usually one), a batch
  each: while they run, the loop delivers the batch before and polls the one after, so a batch's
  Kafka and Redis round trips hide behind the next one's inference instead of adding to it. A lane
  also holds the next batch as soon as it is full, so that its thread goes from one batch straight
  to the next instead of waiting for the loop to hand it over. A batch whose wait is over while
  every lane is busy stays open until one is free: it could not start sooner anyway, and the frames
  that come meanwhile join it instead of waiting for a batch of their own (a bigger batch costs
  less a frame). Batches are delivered and committed in the order they were polled, whichever
  lane is done first;
- **route** (:func:`~agad_stream.stream.route.route`): score records, review items, dead letters;
- **deliver** (:class:`~agad_stream.stream.delivery.Delivery`): until the broker (acks=all) and
  Redis hold all of them;
- **commit** (:class:`~agad_stream.stream.offsets.Offsets`): only then, past the batch; sent
  without waiting for the answer, which the next poll brings (a refused commit is sent again).

At-least-once: a crash before the commit replays the batch; the review queue is idempotent by
frame_id, so only the scores topic can see a frame twice, and only frames after the last commit.

Backpressure: when Kafka or Redis refuses an output, the worker pauses its partitions (it fetches
nothing new), keeps polling so that it stays in the group, and retries only what failed, with
exponential backoff. Nothing is buffered beyond the batches at hand (two a lane at most), and
nothing is committed past them.

Rebalance: one happens only inside ``poll`` (:class:`~agad_stream.stream.rebalance.Rebalances`
notes it). Records polled for a partition that moved away are dropped unscored and uncommitted,
and the frames of the batch on the model thread that belong to it are dropped unpublished once
scored; its new owner reads them from the committed offset. A rebalance during a backpressure
stall is the one case that can duplicate: the batch's outputs may be partly published, and the
lost partitions are not committed, so their new owner scores those frames again.

Shutdown (SIGTERM, SIGINT): finish the batch on the model thread and the one being collected,
deliver, commit, leave the group. A batch that could not be stored stops the worker, and nothing
after it is published or committed, so no commit ever passes frames whose outputs are missing.

Stuck: every step of the loop is bounded (a poll, a flush, a commit: at most SEND_WAIT_S each). If
the loop still makes no step for STUCK_S (three quarters of it at the least: the countdown restarts
at most every quarter), a client library is hung; the worker then writes every thread's stack to
stderr, so that the log says where, and carries on waiting.
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
from kafka import TopicPartition
from kafka.errors import KafkaError

from agad_stream.config import Settings
from agad_stream.inference.base import Backend
from agad_stream.preprocess import stack_images, to_model_input
from agad_stream.review.queue import ReviewQueue
from agad_stream.stream.batcher import Batcher
from agad_stream.stream.clients import Clients
from agad_stream.stream.delivery import Delivery, Pending
from agad_stream.stream.frames import Frame, Rejection, parse_frame
from agad_stream.stream.isolation import predict_isolating
from agad_stream.stream.metrics import Metrics
from agad_stream.stream.offsets import Offsets
from agad_stream.stream.rebalance import Rebalances
from agad_stream.stream.reload import ModelWatch
from agad_stream.stream.route import Routed, route

log = logging.getLogger(__name__)

LONGEST_POLL_MS = 200.0
"""The longest wait in one poll: also how soon the worker notices a stop signal or a rebalance."""
BACKOFF_S = (0.1, 10.0)
"""First and longest wait between retries of outputs that failed."""
STUCK_S = 120.0
"""No step of the loop for this long: a client is hung, and the stacks go to stderr (see above)."""
STDERR_FD = 2
"""Where the stacks go: the process's stderr, whatever has replaced ``sys.stderr`` since."""
DECODE_THREADS = 2
"""Threads decoding polled frames: two keep ahead of the model on this project's 2-core machines."""
BATCHES_PER_LANE = 2
"""Batches a lane holds at once: the one its model thread scores and the next, ready to start."""
SHORTEST_POLL_MS = 1.0
"""While the model thread runs, a poll waits at most until its batch should be done, and this long
at the least."""


@dataclass(frozen=True)
class Polled:
    """A polled record and its frame being decoded, as item ``index`` of a decoding task."""

    record: Any
    parsed: Future[list[Frame | Rejection]]
    index: int
    at_ms: float  # when the poll returned it, ms since epoch

    def frame(self) -> Frame | Rejection:
        return self.parsed.result()[self.index]


@dataclass
class Inference:
    """The frames the backend scored, their scores and heat-maps, and the frames it failed on."""

    frames: list[Frame]
    scores: np.ndarray
    heatmaps: np.ndarray
    failed: list[Rejection]

    def without(self, lost: set[TopicPartition]) -> Inference:
        """The frames of partitions not in ``lost`` (itself when nothing is lost, the usual case)."""
        if not lost:
            return self
        kept = [i for i, frame in enumerate(self.frames) if not _in(frame.record, lost)]
        return Inference(
            [self.frames[i] for i in kept],
            self.scores[kept],
            self.heatmaps[kept],
            [rejection for rejection in self.failed if not _in(rejection.record, lost)],
        )


@dataclass
class Scoring:
    """A batch on the model thread, with the model it was given to: a reload meanwhile never
    relabels it. ``lost``: partitions that moved away since, whose frames are not published."""

    records: list[Any]
    rejected: list[Rejection]
    inference: Future[Inference]
    model_version: str
    threshold: float
    done_by: float  # time.monotonic() when the batch should be done, judged by the last one
    lost: set[TopicPartition] = field(default_factory=set)


def _parse_all(records: list[Any], image_size: int, channels: int) -> list[Frame | Rejection]:
    return [parse_frame(r, image_size=image_size, channels=channels) for r in records]


def _in(record: Any, partitions: set[TopicPartition]) -> bool:
    return TopicPartition(record.topic, record.partition) in partitions


class Worker:
    """A scorer process's loop; ``backend`` serves ``model_dir``, ``backend_loader`` loads another."""

    def __init__(
        self,
        settings: Settings,
        model_dir: Path,
        backend: Backend,
        backend_loader: Callable[[Path], Backend],
        clients: Clients,
        *,
        watch: ModelWatch | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.topics = settings.kafka.topics
        self.clients = clients
        self.consumer = clients.consumer
        self.load_backend = backend_loader
        self.watch = watch
        self.metrics = metrics or Metrics()
        self.batcher: Batcher[Polled] = Batcher(settings.scorer.max_batch, settings.scorer.max_wait_ms)
        self.decoder = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="decode")
        self.lanes = backend.lanes  # _serve makes new model threads when a reload changes it
        self.model_threads = ThreadPoolExecutor(self.lanes, thread_name_prefix="model")
        self.in_flight: deque[Scoring] = deque()  # oldest first: delivered and committed in order
        self.abandoned = False  # a batch could not be stored: publish and commit nothing after it
        self.outage_since: float | None = None  # when poll last found the broker unreachable
        self._inference_s = 0.0  # the last batch's
        self.review = ReviewQueue(clients.redis, settings.redis.key_prefix)
        self.delivery = Delivery(clients.producer, self.review)
        self.offsets = Offsets(self.consumer)
        self.rebalances = Rebalances(self.consumer)
        self.stopping = threading.Event()
        self.totals = {"scored": 0, "flagged": 0, "dead_lettered": 0}
        self.threshold = 0.0
        self._canary = np.zeros(0, np.float32)
        self._countdown_started = -STUCK_S  # the first step starts it
        self._serve(model_dir, backend)

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
        self.consumer.subscribe([self.topics.frames], listener=self.rebalances)
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
                self._stepped()
                if not len(self.batcher) and not self.in_flight:
                    self._maybe_reload()
                self.batcher.add(self._poll())
                scored = bool(self.in_flight) and self.in_flight[0].inference.done()
                starts = self._batch_starts()
                if starts or scored:
                    self._settle_rebalance()
                    self._score(self.batcher.take() if starts else [])
            self._settle_rebalance()
            self._score(self.batcher.take())
            self._drain()
            self._finish_commits()
        finally:
            faulthandler.cancel_dump_traceback_later()
            self.decoder.shutdown(cancel_futures=True)
            self.model_threads.shutdown(cancel_futures=True)
            self.clients.close()
            if self.watch is not None:
                self.watch.close()
        log.info(
            "stopped: %d frames scored, %d flagged, %d dead-lettered",
            self.totals["scored"],
            self.totals["flagged"],
            self.totals["dead_lettered"],
        )

    # --- the pipeline -------------------------------------------------------------------------

    def _poll(self) -> list[Polled]:
        """Records for the batch, each already decoding; also where rebalances happen and postponed
        commits go out."""
        wanted, wait_ms = self.batcher.poll_budget(LONGEST_POLL_MS)
        if self.in_flight:  # be back when the oldest is done, to deliver it (and start a held batch)
            due_ms = max((self.in_flight[0].done_by - time.monotonic()) * 1000.0, SHORTEST_POLL_MS)
            wait_ms = due_ms if self.batcher.ready() else min(wait_ms, due_ms)
        polled = self._poll_through_outage(timeout_ms=wait_ms, max_records=wanted)
        if not polled and not self.consumer.assignment():
            time.sleep(LONGEST_POLL_MS / 1000)  # poll returns at once without partitions
        self._drop_lost()
        self._commit()
        records = [r for partition_records in polled.values() for r in partition_records]
        spec = self.backend.card.input  # a reload happens only between batches: this is the batch's
        now_ms = time.time() * 1000.0
        # One task per decode thread, not per record: a task's hand-over costs a third of a small
        # frame's decoding, and every thread it wakes takes a core from the model for a moment.
        size = max(-(-len(records) // DECODE_THREADS), 1)  # contiguous runs, in polled order
        decoding: list[Polled] = []
        for start in range(0, len(records), size):
            task = records[start : start + size]
            future = self.decoder.submit(_parse_all, task, spec.image_size, spec.channels)
            decoding.extend(Polled(record, future, index, now_ms) for index, record in enumerate(task))
        return decoding

    def _poll_through_outage(self, **options: Any) -> dict[TopicPartition, list[Any]]:
        """``consumer.poll(**options)``, or nothing while the broker is unreachable: the batch in
        hand is kept and commits retry once it is back. Errors that retrying cannot cure raise."""
        try:
            polled: dict[TopicPartition, list[Any]] = self.consumer.poll(**options)
        except KafkaError as exc:
            if not exc.retriable:
                raise
            if self.outage_since is None:
                self.outage_since = time.monotonic()
                log.warning("the Kafka broker is unreachable (%s); retrying until it is back", exc)
            time.sleep(LONGEST_POLL_MS / 1000)
            return {}
        if self.outage_since is not None:
            log.info("the Kafka broker is back after %.0f s", time.monotonic() - self.outage_since)
            self.outage_since = None
        return polled

    def _batch_starts(self) -> bool:
        """A full batch goes to a lane at once (to be next, if the lane is busy); one whose wait is
        over, only when a lane is free."""
        if self.batcher.full():
            return True
        busy = sum(not scoring.inference.done() for scoring in self.in_flight)
        return self.batcher.ready() and busy < self.lanes

    def _score(self, batch: list[Polled]) -> None:
        """Give ``batch`` (if any) to a model thread, waiting for the oldest batch when every lane
        holds a batch and the next; then deliver and commit, oldest first, the batches that are done."""
        if batch and not self.abandoned:
            if len(self.in_flight) >= BATCHES_PER_LANE * self.lanes:
                self.in_flight[0].inference.result()  # a lane has room again
            self.in_flight.append(self._start(batch))
        while self.in_flight and self.in_flight[0].inference.done() and not self.abandoned:
            self._finish(self.in_flight.popleft())

    def _drain(self) -> None:
        """Deliver and commit every batch still on the model threads, oldest first."""
        while self.in_flight and not self.abandoned:
            self._finish(self.in_flight.popleft())

    def _start(self, batch: list[Polled]) -> Scoring:
        stage = self.metrics.stage
        closed_ms, started = time.time() * 1000.0, time.perf_counter()
        parsed = [p.frame() for p in batch]
        stage["decode"].observe(time.perf_counter() - started)
        for polled, frame in zip(batch, parsed, strict=True):
            if isinstance(frame, Frame):
                stage["fetch"].observe(max(polled.at_ms - frame.ts_ms, 0.0) / 1000.0)
            stage["batch_wait"].observe((closed_ms - polled.at_ms) / 1000.0)
        frames = [p for p in parsed if isinstance(p, Frame)]
        # A batch queued behind another on its lane starts when that one is done.
        ahead = self.in_flight[-self.lanes].done_by if len(self.in_flight) >= self.lanes else 0.0
        return Scoring(
            records=[p.record for p in batch],
            rejected=[p for p in parsed if isinstance(p, Rejection)],
            inference=self.model_threads.submit(self._infer, frames),
            model_version=self.backend.card.model_version,
            threshold=self.threshold,
            done_by=max(time.monotonic(), ahead) + self._inference_s,
        )

    def _finish(self, scoring: Scoring) -> None:
        """Route, deliver and commit a batch the model thread has scored."""
        inference = scoring.inference.result().without(scoring.lost)
        rejected = [r for r in scoring.rejected if not _in(r.record, scoring.lost)]
        records = [r for r in scoring.records if not _in(r, scoring.lost)]
        routed = route(
            inference.frames,
            inference.scores,
            inference.heatmaps,
            [*rejected, *inference.failed],
            threshold=scoring.threshold,
            model_version=scoring.model_version,
            topics=self.topics,
            now_ms=time.time() * 1000.0,
        )
        for rejection in [*rejected, *inference.failed]:
            record = rejection.record
            log.warning(
                "dead letter %s:%d:%d: %s", record.topic, record.partition, record.offset, rejection.reason
            )
        stage = self.metrics.stage
        delivering = time.perf_counter()
        delivered = self._deliver(Pending.of(routed))
        stage["deliver"].observe(time.perf_counter() - delivering)
        if not delivered:
            self.abandoned = True
            log.warning(
                "stopped with %d frames of a batch uncommitted; they will be scored again", len(records)
            )
            return
        lost = self._drop_lost()  # during a stall in delivery
        self.offsets.stage(r for r in records if not _in(r, lost))
        committing = time.perf_counter()
        self._commit()
        stage["commit"].observe(time.perf_counter() - committing)
        self._count(routed, inference.frames, len(records))

    def _infer(self, frames: list[Frame]) -> Inference:
        if not frames:
            size = self.backend.card.input.image_size
            return Inference([], np.zeros(0, np.float32), np.zeros((0, 1, size, size), np.float32), [])
        batch = to_model_input(stack_images([frame.image for frame in frames]))
        started = time.perf_counter()
        isolated = predict_isolating(self._predict, batch, self._canary)
        self._inference_s = time.perf_counter() - started
        self.metrics.inference_seconds.observe(self._inference_s)
        if isolated.scored:
            self._canary = batch[isolated.scored[:1]].copy()
        failed = [Rejection(frames[i].record, reason) for i, reason in sorted(isolated.failures.items())]
        scored = [frames[i] for i in isolated.scored]
        return Inference(scored, isolated.scores, isolated.heatmaps, failed)

    def _predict(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores, heatmaps = self.backend.predict(batch)
        if heatmaps is None:
            raise RuntimeError(f"backend {self.backend.name} returned no heat-maps")
        return scores, heatmaps

    def _deliver(self, pending: Pending) -> bool:
        """Store ``pending``, retrying what fails; False when asked to stop before it was all stored.

        While it waits it pauses the partitions and keeps polling, so the worker stays in its group
        however long Kafka or Redis is away, and fetches nothing it could not store.
        """
        delay = BACKOFF_S[0]
        try:
            while True:
                self.delivery.attempt(pending)
                if pending.empty():
                    return True
                if self.stopping.is_set() and self.rebalances.holding:
                    return False
                if not self.rebalances.holding:
                    self.metrics.stalls.inc()
                    log.warning("outputs not stored; pausing intake and retrying with backoff")
                    self.consumer.pause(*self.consumer.assignment())
                    self.rebalances.holding = True
                self._poll_without_taking(delay * 1000)
                self._stepped()
                delay = min(delay * 2, BACKOFF_S[1])
        finally:
            if self.rebalances.holding:
                self.rebalances.holding = False
                self.consumer.resume(*self.consumer.paused())
                log.info("intake resumed")

    def _stepped(self) -> None:
        """The loop made a step: restart the STUCK_S countdown, at most every quarter of it (each
        restart starts a thread, which the loop's hot path need not pay for every batch)."""
        now = time.monotonic()
        if now - self._countdown_started >= STUCK_S / 4:
            faulthandler.dump_traceback_later(STUCK_S, repeat=True, file=STDERR_FD)
            self._countdown_started = now

    def _commit(self) -> None:
        self.offsets.commit_soon()
        self.metrics.consumer_lag.set(self.offsets.lag)

    def _commit_and_wait(self) -> None:
        if self.offsets.commit():
            self.metrics.consumer_lag.set(self.offsets.lag)

    def _count(self, routed: Routed, frames: Sequence[Frame], records: int) -> None:
        now_ms = time.time() * 1000.0
        for frame in frames:
            self.metrics.end_to_end_seconds.observe(max(now_ms - frame.ts_ms, 0.0) / 1000.0)
        self.metrics.batch_size.observe(records)
        self.metrics.scored.inc(routed.scored)
        self.metrics.flagged.inc(routed.flagged)
        self.metrics.dead_lettered.inc(routed.dead_lettered)
        self.totals["scored"] += routed.scored
        self.totals["flagged"] += routed.flagged
        self.totals["dead_lettered"] += routed.dead_lettered

    # --- rebalances and leaving ---------------------------------------------------------------

    def _drop_lost(self) -> set[TopicPartition]:
        """The partitions now owned elsewhere: their staged offsets are forgotten, their polled
        records dropped, and their frames in the batch on the model thread will not be published."""
        lost = self.rebalances.take_lost()
        if not lost:
            return lost
        self.offsets.forget(lost)
        for scoring in self.in_flight:
            scoring.lost |= lost
        dropped = self.batcher.discard(lambda p: _in(p.record, lost))
        if dropped:
            log.info("rebalance: dropped %d polled frames of partitions now owned elsewhere", dropped)
        return lost

    def _settle_rebalance(self) -> None:
        """If a rebalance is under way, poll (taking nothing) until the assignment comes, then drop
        what is lost, so that nothing of a partition that moved is scored or published. Gives up
        after the session timeout (the group has then moved on without this worker anyway)."""
        if not self.rebalances.under_way:
            return  # what the last poll lost is dropped already
        deadline = time.monotonic() + self.settings.scorer.session_timeout_ms / 1000
        log.info("rebalance under way: waiting for the new assignment before publishing")
        while self.rebalances.under_way and time.monotonic() < deadline:
            self._poll_without_taking(LONGEST_POLL_MS)
            self._stepped()
        self._drop_lost()

    def _finish_commits(self) -> None:
        """Before leaving: commit what is stored, polling (paused) through a rebalance under way.

        Gives up after the session timeout: the new owners then score the uncommitted frames again.
        """
        deadline = time.monotonic() + self.settings.scorer.session_timeout_ms / 1000
        self._commit_and_wait()
        if self.offsets.pending:
            self.consumer.pause(*self.consumer.assignment())
        while self.offsets.pending and time.monotonic() < deadline:
            self._poll_without_taking(LONGEST_POLL_MS)
            self._drop_lost()
            self._commit_and_wait()
        if self.offsets.pending:
            log.warning(
                "leaving with offsets uncommitted; the last frames of those partitions will be scored again"
            )

    def _poll_without_taking(self, timeout_ms: float) -> None:
        """Poll to stay in the group while paused; records of a racing assignment are read later."""
        for tp, records in self._poll_through_outage(timeout_ms=timeout_ms).items():
            self.consumer.seek(tp, records[0].offset)

    # --- the model served ---------------------------------------------------------------------

    def _serve(self, model_dir: Path, backend: Backend) -> None:
        """Serve ``backend`` from now on: its threshold (logged), and a canary it is known to score."""
        self.model_dir, self.backend = model_dir, backend
        card = backend.card
        override = self.settings.scorer.threshold
        if override is None:
            self.threshold, source = card.threshold.value, f"model.json: {card.threshold.method}"
        else:
            self.threshold, source = override, "AGAD_SCORER__THRESHOLD or --threshold"
        log.info("model %s flags scores >= %.6g (%s)", card.model_version, self.threshold, source)
        self.metrics.set_model(card.model_version, self.threshold)
        size, channels = card.input.image_size, card.input.channels
        self._canary = np.zeros((1, channels, size, size), np.float32)  # replaced by each scored frame
        if backend.lanes != self.lanes:  # nothing is in flight: models change only between batches
            self.model_threads.shutdown()
            self.lanes = backend.lanes
            self.model_threads = ThreadPoolExecutor(self.lanes, thread_name_prefix="model")

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
        self._serve(directory, backend)
        self.metrics.reloads.inc()
