"""Hot reload: which model version the worker should serve next, from ``models`` events or a registry.

Two sources, checked between batches:

- the ``models`` topic: JSON ``{model_version, uri, sha256}``. ``uri`` is a path (``file://`` or
  plain; relative paths are relative to the registry folder, ``AGAD_REGISTRY``) to the version's
  directory, ``sha256`` its :func:`~agad_stream.model.card.model_digest`. An event whose files do
  not match the digest or whose card names another version is refused with an error log, and the
  worker keeps serving what it has.
- the registry pointer, when the worker was started on a registry: any rewrite of ``current``
  (a new inode or modification time, so that a promotion and a quick rollback are both seen) is
  an instruction to serve the version it names.

Whichever instruction came last wins; one naming the version being served changes nothing.

The worker listens to the ``models`` topic from its end at start-up: what was promoted before is
what the registry pointer or ``--model`` says.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from agad_stream.errors import AgadError
from agad_stream.model.card import load_card, model_digest
from agad_stream.model.registry import POINTER, current_version

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelEvent:
    """A ``models`` topic message: a promoted version and where its files are."""

    model_version: str
    uri: str
    sha256: str

    @classmethod
    def parse(cls, value: bytes) -> ModelEvent:
        try:
            data = json.loads(value)
            return cls(str(data["model_version"]), str(data["uri"]), str(data["sha256"]).lower())
        except (ValueError, TypeError, KeyError) as exc:
            raise AgadError(f"not a models event (JSON with model_version, uri, sha256): {exc!r}") from None

    def to_json(self) -> bytes:
        return json.dumps(
            {"model_version": self.model_version, "uri": self.uri, "sha256": self.sha256}
        ).encode()


def resolve_event(event: ModelEvent, registry: Path) -> Path:
    """The event's model directory, checked against its digest and version; AgadError if it is not."""
    location = event.uri.removeprefix("file://")
    directory = Path(location) if Path(location).is_absolute() else registry / location
    if not directory.is_dir():
        raise AgadError(f"models event for {event.model_version}: {directory} is not a directory here")
    digest = model_digest(directory)
    if digest != event.sha256:
        raise AgadError(
            f"models event for {event.model_version}: the files in {directory} have sha256 {digest}, "
            f"the event says {event.sha256}; refusing to load them"
        )
    card = load_card(directory)
    if card.model_version != event.model_version:
        raise AgadError(
            f"models event for {event.model_version}: {directory} holds version {card.model_version}"
        )
    return directory


class ModelWatch:
    """Tells the worker, between batches, which model directory to switch to (None: keep the current)."""

    def __init__(
        self,
        consumer: KafkaConsumer | None,
        topic: str,
        registry: Path,
        watched_registry: Path | None,
        interval_s: float = 1.0,
    ) -> None:
        self.consumer = consumer
        self.registry = registry
        self.watched_registry = watched_registry
        self.interval_s = interval_s
        self._next_check = 0.0
        self._pointer_stamp = self._stamp()
        if watched_registry is not None:
            current_version(watched_registry)  # fail at start-up, not later, on a broken pointer
        if consumer is not None:
            partitions = consumer.partitions_for_topic(topic) or {0}
            assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            consumer.seek_to_end(*assigned)
            for tp in assigned:
                consumer.position(tp)  # resolve "end" now, so an event sent after start-up is seen

    def poll(self) -> Path | None:
        """A model directory to load now, or None; checks at most once per ``interval_s``."""
        now = time.monotonic()
        if now < self._next_check:
            return None
        self._next_check = now + self.interval_s
        found: Path | None = None
        if self.consumer is not None:
            try:
                polled = self.consumer.poll(timeout_ms=0)
            except KafkaError as exc:
                if not exc.retriable:
                    raise
                log.warning("model events unreadable while the broker is away (%s); will check again", exc)
                polled = {}
            for records in polled.values():
                for record in records:
                    found = self._from_event(record) or found
        stamp = self._stamp()
        if self.watched_registry is not None and stamp != self._pointer_stamp:
            self._pointer_stamp = stamp
            try:
                found = current_version(self.watched_registry)
            except AgadError as exc:
                log.error("registry pointer unreadable, keeping the current model: %s", exc)
        return found

    def _stamp(self) -> tuple[int, int] | None:
        """Identity of the pointer file's current version: set_current replaces the file."""
        if self.watched_registry is None:
            return None
        try:
            stat = (self.watched_registry / POINTER).stat()
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns

    def _from_event(self, record: Any) -> Path | None:
        try:
            event = ModelEvent.parse(record.value)
            return resolve_event(event, self.registry)
        except AgadError as exc:
            log.error("ignoring models event at offset %d: %s", record.offset, exc)
            return None

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close(autocommit=False)
