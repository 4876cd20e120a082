"""Promoting a model version: the registry pointer, its history, and the ``models`` event.

Order matters for what a crash leaves behind. The version directory is complete before anything
points at it (the retraining loop writes it under a dot-name and renames it into place); the
pointer ``current`` is replaced atomically (old name or new, never half); the event on the models
topic follows. A crash before the rename leaves the previous version current; one after it but
before the event leaves the new version current, which scorers watching the registry already
serve, and ``agad models promote`` can announce again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kafka import KafkaProducer
from kafka.errors import KafkaError

from agad_stream.config import KafkaSettings
from agad_stream.errors import AgadError
from agad_stream.inference.base import ONNX_FILE
from agad_stream.model.card import ModelCard, load_card, model_digest
from agad_stream.model.registry import current_version, is_registry, set_current, versions
from agad_stream.stream.reload import ModelEvent

HISTORY = "history.jsonl"


@dataclass(frozen=True)
class Promotion:
    version: str
    previous: str | None
    event: ModelEvent
    announced: bool


def promote(registry: Path, version: str, kafka: KafkaSettings | None, *, reason: str = "") -> Promotion:
    """Make ``version`` current in ``registry`` and announce it on the models topic (when ``kafka``)."""
    directory = registry / version
    card = load_card(directory)
    if card.model_version != version:
        raise AgadError(f"{directory} holds model version {card.model_version}, not {version}")
    if not (directory / ONNX_FILE).is_file():
        raise AgadError(f"{directory} has no {ONNX_FILE}; export it first: `agad export --model {directory}`")
    previous = current_version(registry).name if is_registry(registry) else None
    set_current(registry, version)
    _record(registry, version, previous, reason)
    event = ModelEvent(version, version, model_digest(directory))
    announced = False
    if kafka is not None:
        announce(kafka, event)
        announced = True
    return Promotion(version, previous, event, announced)


def announce(kafka: KafkaSettings, event: ModelEvent) -> None:
    """Publish ``event`` on the models topic and wait for the broker (acks=all)."""
    try:
        producer = KafkaProducer(**kafka.client_options(), acks="all", max_block_ms=10_000)
    except KafkaError as exc:
        raise AgadError(_unannounced(event, exc)) from None
    try:
        producer.send(kafka.topics.models, value=event.to_json()).get(timeout=30)
    except KafkaError as exc:
        raise AgadError(_unannounced(event, exc)) from None
    finally:
        producer.close(timeout=10)


def _unannounced(event: ModelEvent, exc: Exception) -> str:
    return (
        f"{event.model_version} is current in the registry, but its models event was not sent ({exc!r}): "
        "scorers serving the registry switch anyway; others do once you run "
        f"`agad models promote {event.model_version}` again with Kafka reachable"
    )


def _record(registry: Path, version: str, previous: str | None, reason: str) -> None:
    line = {"version": version, "previous": previous, "at": datetime.now(UTC).isoformat(timespec="seconds")}
    if reason:
        line["reason"] = reason
    with (registry / HISTORY).open("a") as handle:
        handle.write(json.dumps(line) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def history(registry: Path) -> list[dict[str, str | None]]:
    path = registry / HISTORY
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def rollback_target(registry: Path) -> str:
    """The version that was current before the current one (by the history, else the card's parent)."""
    current = current_version(registry)
    for entry in reversed(history(registry)):
        if entry["version"] == current.name and entry.get("previous"):
            return str(entry["previous"])
    parent = load_card(current).parent_version
    if parent and (registry / parent).is_dir():
        return parent
    raise AgadError(f"nothing to roll back to: {current.name} has no earlier version in {registry}")


def cards(registry: Path) -> list[ModelCard]:
    return [load_card(directory) for directory in versions(registry)]
