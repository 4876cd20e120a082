"""`agad retrain` killed at every stage leaves the registry consistent and the scorer serving; a second
retrain started during the first stops with a message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agad_stream.config import Settings
from agad_stream.model.card import load_card
from agad_stream.model.registry import current_version, set_current
from agad_stream.review.labels import LabelRecord, decided_now, label_producer, publish
from deploy.onnx_export import export_onnx
from deploy.services import manager
from tests.stream_support import (
    ServeProcess,
    distinct_ids,
    jpeg,
    make_frames,
    produce,
    read_topic,
    worker_env,
)
from tests.support import KafkaClients, Services
from tests.test_train_evaluate_cli import _write_folder
from trainer.agad.variant import preset
from trainer.api import TrainConfig, train
from trainer.data import load_dataset

STAGES = ("labels", "training", "exporting", "promoting")


def _label(n: int) -> LabelRecord:
    kind = "anomaly" if n % 2 else "normal"
    return LabelRecord(
        frame_id=f"decided-{n:03d}",
        camera_id="cam-00",
        ts_ms=1_700_000_000_000 + n,
        content_type="image/jpeg",
        label=kind,  # type: ignore[arg-type]
        defect="",
        reviewer="ana",
        decided_at=decided_now(),
        model_version="faults-v1",
        score=1.0,
        image=jpeg(n),
    )


@pytest.fixture
def registry_with_labels(settings: Settings, tmp_path: Path) -> Path:
    folder = tmp_path / "parts"
    _write_folder(folder)
    registry = settings.registry
    config = TrainConfig(preset("default", batch_size=16), epochs=1, model_version="faults-v1")
    train(config, load_dataset(f"folder:{folder}", 32, gamma=0), registry / "faults-v1", progress=False)
    export_onnx(registry / "faults-v1")
    set_current(registry, "faults-v1")
    producer = label_producer(settings.kafka)
    try:
        for n in range(40):
            publish(producer, settings.kafka.topics.labels, _label(n))
    finally:
        producer.close(timeout=10)
    return registry


def _retrain(settings: Settings, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGAD_")}
    env |= {**worker_env(settings), "AGAD_REGISTRY": str(settings.registry)}
    command = [str(Path(sys.executable).with_name("agad")), "retrain", "--epochs", "3", "--margin", "1",
               "--lock-seconds", "3", "--no-progress", "--json", *extra]  # fmt: skip
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait_for(log: Path, text: str, process: subprocess.Popen[bytes], timeout: float = 300) -> bool:
    """True once ``text`` is in the log; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return True
        if process.poll() is not None:
            return text in log.read_text(errors="replace")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {text!r}:\n{log.read_text()[-2000:]}")


def _consistent(registry: Path) -> str:
    """The current version, after checking it is complete and servable."""
    current = current_version(registry)
    assert not current.name.startswith("."), current
    assert load_card(current).model_version == current.name
    assert (current / "model.onnx").is_file() and (current / "weights.safetensors").is_file()
    return current.name


def test_a_retrain_killed_at_any_stage_leaves_the_registry_serving(
    settings: Settings,
    registry_with_labels: Path,
    kafka_clients: KafkaClients,
    serve: Callable[..., ServeProcess],
    tmp_path: Path,
) -> None:
    registry = registry_with_labels
    worker = serve(registry, "w1")
    worker.wait_assigned()
    for stage in STAGES:
        log = tmp_path / f"retrain-{stage}.log"
        process = _retrain(settings, log)
        reached = _wait_for(log, f"retrain: {stage}", process)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert reached, log.read_text()
        _consistent(registry)
        time.sleep(3.5)  # the dead retrain's lock expires
    produce(kafka_clients.producer(), settings.kafka.topics.frames, make_frames(8, prefix="after"))
    scores = read_topic(
        settings, settings.kafka.topics.scores, lambda r: len(distinct_ids(r)) >= 8, "8 scores"
    )
    assert len(distinct_ids(scores)) == 8  # the scorer kept serving whatever the retrains did

    survivor = _retrain(settings, tmp_path / "finish.log", "--min-new-labels", "0")
    assert survivor.wait(timeout=600) == 0, (tmp_path / "finish.log").read_text()
    outcome = json.loads((tmp_path / "finish.log").read_text().strip().splitlines()[-1])
    assert outcome["status"] == "promoted" and _consistent(registry) == outcome["candidate_version"]
    assert not list(registry.glob(".incoming-*"))  # what the killed ones left was cleared


def test_a_second_retrain_during_the_first_stops_with_a_message(
    settings: Settings, registry_with_labels: Path, tmp_path: Path
) -> None:
    first = _retrain(settings, tmp_path / "first.log")
    assert _wait_for(tmp_path / "first.log", "retrain: training", first)
    second = _retrain(settings, tmp_path / "second.log")
    assert second.wait(timeout=120) == 2
    message = (tmp_path / "second.log").read_text()
    assert "another retrain is running" in message and "Traceback" not in message
    assert first.wait(timeout=600) == 0, (tmp_path / "first.log").read_text()


def test_a_retrain_without_the_broker_stops_with_a_message_and_changes_nothing(
    services: Services, settings: Settings, registry_with_labels: Path, tmp_path: Path
) -> None:
    services.require_managed("kafka")
    before = sorted(p.name for p in registry_with_labels.iterdir())
    manager.down(services.local, "kafka")
    try:
        process = _retrain(settings, tmp_path / "nobroker.log")
        assert process.wait(timeout=300) == 2
    finally:
        manager.up(services.local, "kafka")
    message = (tmp_path / "nobroker.log").read_text()
    assert "cannot reach Kafka" in message and "AGAD_KAFKA__BOOTSTRAP_SERVERS" in message
    assert "Traceback" not in message
    assert sorted(p.name for p in registry_with_labels.iterdir()) == before
    assert _consistent(registry_with_labels) == "faults-v1"
