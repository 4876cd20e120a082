"""Helpers of the review tests: flagged frames in the real Redis queue, the page over HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import redis
from pydantic import SecretStr
from starlette.testclient import TestClient

from agad_stream.config import Settings
from agad_stream.review.auth import Sessions
from agad_stream.review.queue import ReviewItem, ReviewQueue
from agad_stream.review.service import reviewers_from, reviewing_from
from agad_stream.review.web import create_app
from tests.stream_support import jpeg

TOKENS = {"ana": "ana-token-0123456789", "ben": "ben-token-9876543210"}


def review_settings(settings: Settings, **review: object) -> Settings:
    """``settings`` with the two test reviewers and any other review settings given."""
    reviewers = ",".join(f"{name}:{token}" for name, token in TOKENS.items())
    changed = settings.review.model_copy(update={"reviewers": SecretStr(reviewers), **review})
    return settings.model_copy(update={"review": changed})


def flag(client: redis.Redis, settings: Settings, count: int, start: int = 0) -> list[ReviewItem]:
    """``count`` flagged frames in the review queue, as the scorer queues them; scores rise with n."""
    items = [
        ReviewItem(
            frame_id=f"flagged-{n:04d}",
            camera_id=f"cam-{n % 3:02d}",
            ts_ms=1_700_000_000_000 + n,
            score=10.0 + n,
            threshold=5.0,
            model_version="review-test-v1",
            image=jpeg(n),
            content_type="image/jpeg",
            heatmap=np.random.default_rng(n).random((32, 32)).astype(np.float32),
        )
        for n in range(start, start + count)
    ]
    ReviewQueue(client, settings.redis.key_prefix).add(items)
    return items


@dataclass
class Page:
    """The review app, and how to reach it signed in or not."""

    settings: Settings
    app: object

    def client(self) -> TestClient:
        return TestClient(self.app, base_url="http://review.test", follow_redirects=False)  # type: ignore[arg-type]

    def signed_in(self, name: str) -> tuple[TestClient, str]:
        """A client with ``name``'s session, and the session's CSRF token (read off the queue page)."""
        client = self.client()
        answer = client.post("/login", data={"token": TOKENS[name]})
        assert answer.status_code == 303, answer.text
        found = re.search(r'name="csrf" value="([^"]+)"', client.get("/").text)
        assert found
        return client, found.group(1)


@contextmanager
def review_page(settings: Settings) -> Iterator[Page]:
    client = redis.Redis.from_url(settings.redis.url, **settings.redis.client_options())
    reviewing = reviewing_from(settings, client)
    sessions = Sessions(client, settings.redis.key_prefix, settings.review.session_hours * 3600)
    try:
        yield Page(settings, create_app(reviewing, sessions, reviewers_from(settings)))
    finally:
        reviewing.producer.close(timeout=10)
        client.close()
