"""Reloads the scorer refuses, and the threshold that comes with a version.

No AGAD_SCORER__THRESHOLD here: the thresholds are the model cards' own (5 for one version, 7 for
the other), and every refused reload leaves the current version and its threshold serving.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from agad_stream.config import Settings
from agad_stream.model.card import model_digest
from agad_stream.model.registry import set_current
from agad_stream.stream.reload import ModelEvent
from tests.stream_support import ServeProcess, distinct_ids, make_frames, produce, read_topic, scores_of
from tests.support import KafkaClients


def _with_threshold(source: Path, target: Path, threshold: float) -> Path:
    shutil.copytree(source, target)
    card = json.loads((target / "model.json").read_text())
    card["threshold"] = {"value": threshold, "method": "set for this test"}
    (target / "model.json").write_text(json.dumps(card))
    return target


def test_bad_reloads_are_refused_and_a_good_one_brings_its_threshold(
    settings: Settings,
    kafka_clients: KafkaClients,
    stream_models: dict[str, Path],
    serve: Callable[..., ServeProcess],
) -> None:
    registry = settings.registry
    registry.mkdir(parents=True)
    a = _with_threshold(stream_models["a"], registry / "stream-a", 5.0)
    b = _with_threshold(stream_models["b"], registry / "stream-b", 7.0)
    broken = shutil.copytree(stream_models["b"], registry / "broken")
    (broken / "model.onnx").write_bytes(b"not an ONNX graph")
    set_current(registry, "stream-a")
    worker = serve(registry, "w1")
    worker.wait_for(
        lambda text: "flags scores >= 5 (model.json: set for this test)" in text, "the card's threshold"
    )
    producer, events = kafka_clients.producer(), kafka_clients.producer()
    sent: list = []

    def stream_and_check(version: str, threshold: float) -> None:
        sent.extend(produce(producer, settings.kafka.topics.frames, make_frames(8, start=len(sent))))
        wanted = {f.frame_id for f in sent[-8:]}
        records = read_topic(
            settings, settings.kafka.topics.scores, lambda r: wanted <= distinct_ids(r), "the wave's scores"
        )
        wave = [s for s in scores_of(records) if s["frame_id"] in wanted]
        assert {(s["model_version"], s["threshold"]) for s in wave} == {(version, threshold)}
        assert all(s["is_anomaly"] == (s["score"] >= threshold) for s in wave)

    stream_and_check("stream-a", 5.0)
    refusals = [
        (b"this is not JSON", "not a models event"),
        (ModelEvent("stream-b", "no-such-version", "0" * 64).to_json(), "is not a directory here"),
        (ModelEvent("stream-x", "stream-b", model_digest(b)).to_json(), "holds version stream-b"),
        (ModelEvent("stream-b", "broken", model_digest(broken)).to_json(), "cannot load"),
    ]
    for value, logged in refusals:
        events.send(settings.kafka.topics.models, value).get(timeout=30)
        worker.wait_for(lambda text, logged=logged: logged in text, f"the refusal: {logged}")
        stream_and_check("stream-a", 5.0)  # the current version keeps serving
    (registry / "current").write_text("../elsewhere\n")  # a pointer rewritten wrong
    worker.wait_for(lambda text: "registry pointer unreadable" in text, "the refused pointer")
    stream_and_check("stream-a", 5.0)

    events.send(
        settings.kafka.topics.models, ModelEvent("stream-b", "stream-b", model_digest(b)).to_json()
    ).get(30)
    worker.wait_for(lambda text: "model stream-a -> stream-b" in text, "the reload")
    assert "flags scores >= 7 (model.json: set for this test)" in worker.text()
    stream_and_check("stream-b", 7.0)
    assert a.is_dir() and worker.stop() == 0
