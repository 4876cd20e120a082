"""The review page over HTTP, against the real Redis and Kafka: every endpoint, signed in or not."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
import redis

from agad_stream.config import Settings
from agad_stream.review.auth import COOKIE
from agad_stream.review.labels import read_labels
from tests.review_support import TOKENS, flag, review_page, review_settings


@pytest.fixture
def page_settings(settings: Settings) -> Settings:
    return review_settings(settings)


def test_nothing_without_a_session(page_settings: Settings, redis_client: redis.Redis) -> None:
    flag(redis_client, page_settings, 2)
    with review_page(page_settings) as page:
        client = page.client()
        assert client.get("/").status_code == 303 and client.get("/").headers["location"] == "/login"
        for path in ("/api/queue", "/frames/flagged-0000/image", "/frames/flagged-0000/heatmap", "/metrics"):
            assert client.get(path).status_code == 401, path
        assert client.post("/api/next").status_code == 401
        decision = client.post("/items/flagged-0000/decision", json={"label": "normal"})
        assert decision.status_code == 401
        client.cookies.set(COOKIE, "made-up-session-id")
        assert client.get("/").status_code == 303
        assert client.get("/login").status_code == 200
        assert client.get("/static/review.css").status_code == 200


def test_a_wrong_token_signs_nobody_in(page_settings: Settings) -> None:
    with review_page(page_settings) as page:
        client = page.client()
        answer = client.post("/login", data={"token": "not-a-reviewer-token"})
        assert answer.status_code == 200 and "not a reviewer" in answer.text
        assert COOKIE not in answer.cookies
        assert client.get("/").status_code == 303


def test_sign_in_sets_a_strict_http_only_cookie_and_shows_the_queue(
    page_settings: Settings, redis_client: redis.Redis
) -> None:
    flag(redis_client, page_settings, 5)
    with review_page(page_settings) as page:
        client = page.client()
        answer = client.post("/login", data={"token": TOKENS["ana"]})
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        html = client.get("/").text
        order = [html.index(f"flagged-{n:04d}</a>") for n in (4, 3, 2, 1, 0)]
        assert order == sorted(order)  # highest score first
        assert "5</span> pending" in html.replace('"', "").replace("id=pending>", "")
        queue = client.get("/api/queue").json()
        assert [i["frame_id"] for i in queue["items"]] == [f"flagged-{n:04d}" for n in (4, 3, 2, 1, 0)]
        assert queue["counts"] == {"pending": 5, "claimed": 0, "decided_today": {}}
        camera = client.get("/api/queue", params={"camera": "cam-01"}).json()
        assert [i["frame_id"] for i in camera["items"]] == ["flagged-0004", "flagged-0001"]
        assert "cam-02" in client.get("/", params={"camera": "cam-02"}).text


def test_opening_an_item_claims_it_and_decisions_need_the_csrf_token(
    page_settings: Settings, redis_client: redis.Redis
) -> None:
    (item,) = flag(redis_client, page_settings, 1)
    with review_page(page_settings) as page:
        ana, csrf = page.signed_in("ana")
        ben, ben_csrf = page.signed_in("ben")
        view = ana.get("/items/flagged-0000")
        assert view.status_code == 200 and "review-test-v1" in view.text and "cam-00" in view.text
        assert ben.get("/items/flagged-0000").status_code == 409  # ana has it
        assert ana.get("/api/queue").json()["counts"]["claimed"] == 1
        url = "/items/flagged-0000/decision"
        assert ana.post(url, json={"label": "anomaly"}).status_code == 403  # no CSRF token
        assert ana.post(url, json={"label": "anomaly"}, headers={"X-CSRF-Token": ben_csrf}).status_code == 403
        taken = ben.post(url, json={"label": "normal"}, headers={"X-CSRF-Token": ben_csrf})
        assert taken.status_code == 409
        bad = ana.post(url, json={"label": "anomaly", "defect": "rust"}, headers={"X-CSRF-Token": csrf})
        assert bad.status_code == 400 and "AGAD_REVIEW__DEFECTS" in bad.json()["error"]
        saved = ana.post(url, json={"label": "anomaly", "defect": "crack"}, headers={"X-CSRF-Token": csrf})
        assert saved.status_code == 200 and saved.json() == {
            "saved": True,
            "label": "anomaly",
            "next": "/next",
        }
        again = ana.post(url, json={"label": "anomaly"}, headers={"X-CSRF-Token": csrf})
        assert again.status_code == 410  # decided: gone from the queue
        counts = ana.get("/api/queue").json()["counts"]
        assert counts == {"pending": 0, "claimed": 0, "decided_today": {"anomaly": 1}}
        logout_without_csrf = ana.post("/logout")
        assert logout_without_csrf.status_code == 403

    store = read_labels(page_settings.kafka)
    label = store.labels["flagged-0000"]
    assert (label.label, label.defect, label.reviewer, label.model_version) == (
        "anomaly",
        "crack",
        "ana",
        "review-test-v1",
    )
    assert label.image == item.image and label.camera_id == "cam-00" and label.ts_ms == item.ts_ms
    assert label.score == pytest.approx(item.score) and label.content_type == "image/jpeg"


def test_images_come_by_frame_id_from_redis_never_from_a_path(
    page_settings: Settings, redis_client: redis.Redis
) -> None:
    (item,) = flag(redis_client, page_settings, 1)
    with review_page(page_settings) as page:
        ana, _ = page.signed_in("ana")
        image = ana.get("/frames/flagged-0000/image")
        assert image.status_code == 200 and image.content == item.image
        assert image.headers["content-type"] == "image/jpeg"
        thumb = cv2.imdecode(np.frombuffer(ana.get("/frames/flagged-0000/thumb").content, np.uint8), -1)
        heat = cv2.imdecode(np.frombuffer(ana.get("/frames/flagged-0000/heatmap").content, np.uint8), -1)
        assert thumb is not None and heat is not None and heat.shape == (32, 32, 3)
        for path in (
            "/frames/..%2F..%2F..%2Fetc%2Fpasswd/image",
            "/frames/%2e%2e%2f%2e%2e%2fetc%2fpasswd/image",
            "/frames/....//....//etc/passwd/image",
            "/frames/%00/image",
            "/frames/no-such-frame/image",
        ):
            answer = ana.get(path)
            assert answer.status_code == 404, path
            assert b"root:" not in answer.content


def test_oversized_bodies_are_refused(page_settings: Settings, redis_client: redis.Redis) -> None:
    flag(redis_client, page_settings, 1)
    with review_page(page_settings) as page:
        client = page.client()
        assert client.post("/login", data={"token": "x" * 40_000}).status_code == 413
        ana, csrf = page.signed_in("ana")
        huge = {"label": "normal", "defect": "x" * 40_000}
        answer = ana.post("/items/flagged-0000/decision", json=huge, headers={"X-CSRF-Token": csrf})
        assert answer.status_code == 413
        assert ana.get("/api/queue").json()["counts"]["pending"] == 1  # nothing was decided


def test_next_skip_and_the_api(page_settings: Settings, redis_client: redis.Redis) -> None:
    flag(redis_client, page_settings, 3)
    with review_page(page_settings) as page:
        ana, csrf = page.signed_in("ana")
        first = ana.post("/api/next", headers={"X-CSRF-Token": csrf}).json()
        assert first["frame_id"] == "flagged-0002" and first["owner"] == "ana"
        skip = ana.post(
            "/items/flagged-0002/decision", json={"label": "skip"}, headers={"X-CSRF-Token": csrf}
        )
        assert skip.json()["saved"] is False
        assert ana.post("/api/next", headers={"X-CSRF-Token": csrf}).json()["frame_id"] == "flagged-0001"
        ben, ben_csrf = page.signed_in("ben")
        assert ben.post("/api/next", headers={"X-CSRF-Token": ben_csrf}).json()["frame_id"] == "flagged-0002"
        assert ana.get("/next").headers["location"] == "/items/flagged-0001"  # still hers
        assert ana.post("/api/next").status_code == 403  # POST without the CSRF token


def test_abandoned_claims_return_and_old_items_expire(settings: Settings, redis_client: redis.Redis) -> None:
    page_settings = review_settings(settings, claim_timeout_s=0.5, max_age_h=2.0 / 3600)
    flag(redis_client, page_settings, 2)
    with review_page(page_settings) as page:
        ana, _ = page.signed_in("ana")
        ben, _ = page.signed_in("ben")
        assert ana.get("/items/flagged-0001").status_code == 200
        assert ben.get("/items/flagged-0001").status_code == 409
        time.sleep(0.7)
        assert ben.get("/items/flagged-0001").status_code == 200  # ana walked away
        time.sleep(2.0)
        answer = ben.get("/metrics", headers={"Authorization": f"Bearer {TOKENS['ben']}"})
        assert answer.status_code == 200
        assert "agad_review_expired_total 2.0" in answer.text and "agad_review_pending 0.0" in answer.text
        assert ben.get("/api/queue").json()["items"] == []


def test_metrics_take_a_reviewer_token(page_settings: Settings, redis_client: redis.Redis) -> None:
    flag(redis_client, page_settings, 2)
    with review_page(page_settings) as page:
        client = page.client()
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong-token-000"}).status_code == 401
        text = client.get("/metrics", headers={"Authorization": f"Bearer {TOKENS['ana']}"}).text
        for name in ("agad_review_pending 2.0", "agad_review_claimed 0.0", "agad_review_decided_total",
                     "agad_review_flag_to_decision_seconds", "agad_review_not_saved_total"):  # fmt: skip
            assert name in text, name
