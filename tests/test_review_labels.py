"""Decisions as label records: two reviewers racing, the label store outliving Redis, Kafka away.

All against the real broker and Redis.
"""

from __future__ import annotations

import csv
import json
import random
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import redis

from agad_stream.config import Settings
from agad_stream.review.labels import read_labels
from deploy.services import manager
from tests.review_support import flag, review_page, review_settings
from tests.stream_support import worker_env
from tests.support import WAIT_S, Services

Agad = Callable[..., subprocess.CompletedProcess[str]]


def test_two_reviewers_racing_decide_every_item_once(settings: Settings, redis_client: redis.Redis) -> None:
    page_settings = review_settings(settings)
    flag(redis_client, page_settings, 100)
    decided: dict[str, list[str]] = {"ana": [], "ben": []}
    errors: list[str] = []
    with review_page(page_settings) as page:

        def review(name: str) -> None:
            client, csrf = page.signed_in(name)
            headers = {"X-CSRF-Token": csrf}
            rng = random.Random(name)
            while True:
                item = client.post("/api/next", headers=headers)
                if item.status_code == 204:
                    return
                frame_id = item.json()["frame_id"]
                label = rng.choice(["anomaly", "normal"])
                answer = client.post(f"/items/{frame_id}/decision", json={"label": label}, headers=headers)
                if answer.status_code != 200:
                    errors.append(f"{name} {frame_id}: {answer.status_code} {answer.text}")
                    return
                decided[name].append(frame_id)

        threads = [threading.Thread(target=review, args=(name,)) for name in decided]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT_S)
    assert not errors
    assert decided["ana"] and decided["ben"]  # both took part
    assert not set(decided["ana"]) & set(decided["ben"])
    assert len(decided["ana"]) + len(decided["ben"]) == 100
    labels = read_labels(page_settings.kafka).labels
    assert sorted(labels) == sorted(f"flagged-{n:04d}" for n in range(100))
    for name, frame_ids in decided.items():
        assert all(labels[frame_id].reviewer == name for frame_id in frame_ids)


def test_the_label_store_outlives_redis(
    settings: Settings, redis_client: redis.Redis, agad: Agad, tmp_path: Path
) -> None:
    page_settings = review_settings(settings)
    items = {item.frame_id: item for item in flag(redis_client, page_settings, 12)}
    env = {**worker_env(page_settings), "AGAD_REVIEW__REVIEWERS": "ana:ana-token-0123456789"}
    listed = agad("review", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [i["frame_id"] for i in json.loads(listed.stdout)][:2] == ["flagged-0011", "flagged-0010"]
    for n, frame_id in enumerate(sorted(items)):
        label = ["--label", "anomaly", "--defect", "crack"] if n % 3 == 0 else ["--label", "normal"]
        result = agad("review", "decide", frame_id, *label, "--reviewer", "ana", env=env)
        assert result.returncode == 0, result.stderr
    refused = agad("review", "decide", "flagged-0000", "--label", "normal", "--reviewer", "eve", env=env)
    assert refused.returncode == 2 and "AGAD_REVIEW__REVIEWERS" in refused.stderr

    keys = list(redis_client.scan_iter(match=page_settings.redis.key_prefix + "*"))
    redis_client.delete(*keys)  # everything the scorer and the page keep in Redis: gone
    out = tmp_path / "export"
    exported = agad("labels", "export", "--out", str(out), "--json", env=env)
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout) == {"out": str(out), "normal": 8, "anomalous": {"crack": 4}}
    with (out / "decisions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["frame_id"] for row in rows) == sorted(items)
    for row in rows:
        assert (out / row["file"]).read_bytes() == items[row["frame_id"]].image  # byte for byte
        expected = "train/crack/" if row["label"] == "anomaly" else "train/good/"
        assert row["file"].startswith(expected) and row["reviewer"] == "ana"
    stats = json.loads(agad("labels", "stats", "--json", env=env).stdout)
    assert stats["decided"] == 12 and stats["label"] == {"anomaly": 4, "normal": 8}
    assert stats["defect"] == {"crack": 4} and stats["reviewer"] == {"ana": 12}
    assert stats["model_version"] == {"review-test-v1": 12}


def test_a_decision_while_kafka_is_away_is_not_saved_and_goes_through_later(
    services: Services, settings: Settings, redis_client: redis.Redis
) -> None:
    services.require_managed("kafka")
    page_settings = review_settings(settings)
    flag(redis_client, page_settings, 1)
    with review_page(page_settings) as page:
        ana, csrf = page.signed_in("ana")
        assert ana.get("/items/flagged-0000").status_code == 200
        manager.down(services.local, "kafka")
        try:
            answer = ana.post(
                "/items/flagged-0000/decision", json={"label": "anomaly"}, headers={"X-CSRF-Token": csrf}
            )
            assert answer.status_code == 503
            assert answer.json()["saved"] is False and "was not saved" in answer.json()["error"]
            queue = ana.get("/api/queue").json()
            assert [i["frame_id"] for i in queue["items"]] == ["flagged-0000"]  # still pending
            assert queue["items"][0]["owner"] == "ana"
        finally:
            manager.up(services.local, "kafka")
        again = ana.post(
            "/items/flagged-0000/decision", json={"label": "anomaly"}, headers={"X-CSRF-Token": csrf}
        )
        assert again.status_code == 200 and again.json()["saved"] is True
    assert read_labels(page_settings.kafka).labels["flagged-0000"].label == "anomaly"
