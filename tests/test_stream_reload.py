"""Hot reload during a stream: a models event, then a registry pointer change; no frame dropped."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from itertools import groupby
from pathlib import Path

import numpy as np

from agad_stream.config import Settings
from agad_stream.model.card import model_digest
from agad_stream.model.registry import set_current
from agad_stream.stream.reload import ModelEvent
from tests.stream_support import (
    ServeProcess,
    distinct_ids,
    make_frames,
    offline_scores,
    produce,
    read_all,
    read_topic,
)
from tests.support import KafkaClients


def test_hot_reload_switches_versions_between_batches(
    settings: Settings,
    kafka_clients: KafkaClients,
    stream_models: dict[str, Path],
    serve: Callable[..., ServeProcess],
) -> None:
    registry = settings.registry
    for name, source in stream_models.items():
        shutil.copytree(source, registry / f"stream-{name}")
    set_current(registry, "stream-a")
    expected = {f"stream-{name}": offline_scores(source) for name, source in stream_models.items()}
    worker = serve(registry, "w1", max_batch=8)
    worker.wait_assigned()

    # A camera stream at about 100 frames/s for as long as the test switches models.
    producer = kafka_clients.producer()
    frames_topic, scores_topic = settings.kafka.topics.frames, settings.kafka.topics.scores
    sent: list = []
    done = threading.Event()

    def cameras() -> None:
        while not done.is_set():
            sent.extend(produce(producer, frames_topic, make_frames(8, start=len(sent))))
            time.sleep(0.08)

    thread = threading.Thread(target=cameras)
    thread.start()
    try:

        def scored_more(n: int) -> None:
            target = len(sent) + n
            read_topic(settings, scores_topic, lambda r: len(distinct_ids(r)) >= target, f"{target} scores")

        scored_more(50)
        events = kafka_clients.producer()
        b_dir = registry / "stream-b"
        wrong = ModelEvent("stream-b", "stream-b", "0" * 64)
        events.send(settings.kafka.topics.models, wrong.to_json()).get(timeout=30)
        worker.wait_for(lambda text: "refusing to load them" in text, "the worker to refuse a bad digest")
        scored_more(30)
        event = ModelEvent("stream-b", "stream-b", model_digest(b_dir))
        events.send(settings.kafka.topics.models, event.to_json()).get(timeout=30)
        worker.wait_for(lambda text: "model stream-a -> stream-b" in text, "the reload to stream-b")
        scored_more(50)
        set_current(registry, "stream-b")  # the registry catches up: nothing to reload
        scored_more(30)
        set_current(registry, "stream-a")  # a rollback through the registry pointer
        worker.wait_for(lambda text: "model stream-b -> stream-a" in text, "the reload back to stream-a")
        scored_more(50)
        assert worker.text().count(" -> ") == 2, "the worker reloaded a model it was serving"
    finally:
        done.set()
        thread.join()
    read_topic(settings, scores_topic, lambda r: len(distinct_ids(r)) >= len(sent), "every frame's score")
    assert worker.stop() == 0

    scores = [json.loads(r.value) for r in read_all(settings, scores_topic)]
    assert sorted(s["frame_id"] for s in scores) == sorted(f.frame_id for f in sent), "dropped or duplicated"
    image_of = {f.frame_id: f.image_index for f in sent}
    for score in scores:
        np.testing.assert_allclose(
            score["score"],
            expected[score["model_version"]][image_of[score["frame_id"]]],
            rtol=1e-4,
            err_msg=f"{score['frame_id']} was not scored by {score['model_version']}",
        )
    for camera in {s["camera_id"] for s in scores}:
        versions = [key for key, _ in groupby(s["model_version"] for s in scores if s["camera_id"] == camera)]
        assert versions == ["stream-a", "stream-b", "stream-a"], f"{camera}: {versions}"
