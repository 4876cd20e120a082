"""The whole loop against the real broker and Redis: a model serves, operators label what it flags,
`agad retrain` fine-tunes and promotes, and the scorer switches to the new version mid-stream."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import redis

from agad_stream.config import Settings
from agad_stream.connections import redis_client as redis_client_of
from agad_stream.model.registry import current_version, set_current
from agad_stream.review.service import reviewing_from
from deploy.onnx_export import export_onnx
from tests.review_support import review_settings
from tests.stream_support import SentFrame, ServeProcess, produce, read_topic, scores_of, worker_env
from tests.support import KafkaClients
from tests.test_train_evaluate_cli import _write_folder
from trainer.agad.variant import preset
from trainer.api import TrainConfig, train
from trainer.data import load_dataset

Agad = Callable[..., subprocess.CompletedProcess[str]]


def _test_frames(folder: Path, prefix: str) -> list[SentFrame]:
    """The folder's test images as frames; the frame_id says what an operator would answer."""
    frames = []
    for n, path in enumerate(sorted((folder / "test").glob("*/*.png"))):
        kind = "normal" if path.parent.name == "good" else "anomaly"
        value = cv2.imencode(".jpg", cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))[1].tobytes()
        frames.append(SentFrame(f"{prefix}-{kind}-{path.stem}", f"cam-{n % 4:02d}", n, value, 0))
    return frames


def test_labels_retrain_and_promote_while_the_scorer_runs(
    settings: Settings,
    kafka_clients: KafkaClients,
    redis_client: redis.Redis,
    serve: Callable[..., ServeProcess],
    agad: Agad,
    tmp_path: Path,
) -> None:
    folder = tmp_path / "parts"
    _write_folder(folder)
    registry = settings.registry
    base = train(
        TrainConfig(preset("default", batch_size=16), epochs=2, model_version="loop-v1"),
        load_dataset(f"folder:{folder}", 32, gamma=0),  # semi-supervised: the folder's defects unused
        registry / "loop-v1",
        progress=False,
    )
    assert base.card.data["splits"]["train"]["anomalous"] == 0
    export_onnx(registry / "loop-v1")
    set_current(registry, "loop-v1")

    worker = serve(registry, "w1", threshold=-1e9)  # every frame flagged: every one reaches an operator
    worker.wait_assigned()
    producer = kafka_clients.producer()
    first = produce(producer, settings.kafka.topics.frames, _test_frames(folder, "wave1"))
    queue = settings.redis.key_prefix + "review:pending"
    deadline = time.monotonic() + 120
    while redis_client.xlen(queue) < len(first) and time.monotonic() < deadline:
        time.sleep(0.2)

    page_settings = review_settings(settings)
    reviewing = reviewing_from(page_settings, redis_client_of(page_settings))
    reviewing.refresh()
    try:
        for frame in first:  # an operator answers from the truth, through the review code path
            truth = "normal" if "-normal-" in frame.frame_id else "anomaly"
            reviewing.decide(frame.frame_id, "ana", truth, "scratch" if truth == "anomaly" else "")
    finally:
        reviewing.producer.close(timeout=10)
        reviewing.store.client.close()

    env = {**worker_env(settings), "AGAD_REGISTRY": str(registry)}
    sent: list[SentFrame] = list(first)
    stop = threading.Event()

    def cameras() -> None:  # the line keeps running through the retrain and the switch
        wave = 2
        while not stop.is_set():
            sent.extend(produce(producer, settings.kafka.topics.frames, _test_frames(folder, f"wave{wave}")))
            wave += 1
            time.sleep(0.5)

    thread = threading.Thread(target=cameras)
    thread.start()
    try:
        result = agad(
            "retrain", "--epochs", "1", "--margin", "1", "--no-progress", "--json", env=env, timeout=600
        )
        assert result.returncode == 0, result.stdout + result.stderr
        outcome = json.loads(result.stdout.strip().splitlines()[-1])
        assert outcome["status"] == "promoted", outcome
        promoted = outcome["candidate_version"]
        assert current_version(registry).name == promoted
        worker.wait_for(lambda text: f"-> {promoted}" in text, "the scorer to switch to the new version")
        count = len(sent)
        deadline = time.monotonic() + 60
        while len(sent) < count + 24 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(60)

    expected = {frame.frame_id for frame in sent}
    scores = scores_of(
        read_topic(
            settings,
            settings.kafka.topics.scores,
            lambda r: {json.loads(x.value)["frame_id"] for x in r} >= expected,
            "every frame's score",
        )
    )
    assert {s["frame_id"] for s in scores} == expected  # not one frame lost across the switch
    versions = {s["frame_id"]: s["model_version"] for s in scores}
    assert {versions[f.frame_id] for f in first} == {"loop-v1"}
    assert promoted in set(versions.values())  # the new version's scores carry its name
    card = json.loads((registry / promoted / "model.json").read_text())
    assert card["parent_version"] == "loop-v1"
    assert card["training"]["labels"]["counts"]["train_anomalous"] > 0
    assert (registry / promoted / "retrain" / "report.md").is_file()
    assert (registry / promoted / "retrain" / "roc.png").is_file()
    listed = agad("models", "list", "--json", env=env)
    rows = {row["version"]: row for row in json.loads(listed.stdout)}
    assert rows[promoted]["current"] and rows[promoted]["parent"] == "loop-v1"
