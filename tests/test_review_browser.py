"""The review page in a real headless Chromium: sign in, open what `agad serve` flagged, press a key,
and find the label record on the labels topic. Set AGAD_SCREENSHOTS=DIR to keep the screenshots."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Browser, sync_playwright

from agad_stream.config import Settings
from agad_stream.review.labels import read_labels
from tests.review_support import TOKENS
from tests.stream_support import (
    ServeProcess,
    make_frames,
    middle_threshold,
    offline_scores,
    produce,
    worker_env,
)
from tests.support import WAIT_S, KafkaClients

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: apt-get install -y chromium (./scripts/test installs it as root)"
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield chromium
        chromium.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_an_operator_confirms_a_flagged_frame_with_one_key(
    settings: Settings,
    kafka_clients: KafkaClients,
    redis_client: redis.Redis,
    stream_models: dict[str, Path],
    serve: Callable[..., ServeProcess],
    browser: Browser,
    tmp_path: Path,
) -> None:
    model = stream_models["a"]
    threshold = middle_threshold(offline_scores(model))
    worker = serve(model, "w1", threshold=threshold)
    worker.wait_assigned()
    produce(kafka_clients.producer(), settings.kafka.topics.frames, make_frames(12))
    stream = settings.redis.key_prefix + "review:pending"
    wait_until(lambda: redis_client.xlen(stream) >= 3, "flagged frames in the review queue")

    port = free_port()
    env = {
        **worker_env(settings),
        "AGAD_REVIEW__REVIEWERS": ",".join(f"{name}:{token}" for name, token in TOKENS.items()),
        "AGAD_REVIEW__PORT": str(port),
    }
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGAD_")}
    with (tmp_path / "review.log").open("wb") as log:
        page_server = subprocess.Popen(
            [str(Path(sys.executable).with_name("agad")), "review"],
            env={**clean, **env},
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                assert page_server.poll() is None, (tmp_path / "review.log").read_text()
                return False

        wait_until(answers, "the review page")
        shots = Path(os.environ.get("AGAD_SCREENSHOTS") or tmp_path)
        shots.mkdir(parents=True, exist_ok=True)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{base}/")
        assert page.url.endswith("/login")
        page.fill("input[name=token]", TOKENS["ana"])
        page.click("button[type=submit]")
        page.wait_for_selector("table.queue")
        rows = page.locator("table.queue tbody tr")
        assert rows.count() >= 3
        top = rows.first.locator("td").nth(4).inner_text()
        page.screenshot(path=str(shots / "review-queue.png"))

        page.keyboard.press("Enter")  # review next: the highest score
        page.wait_for_selector("#item")
        assert page.locator("aside h1").inner_text() == top
        page.wait_for_load_state("load")  # the frame and its heat-map shown
        page.locator("#opacity").fill("70")
        page.screenshot(path=str(shots / "review-item.png"))
        with page.expect_navigation():
            page.keyboard.press("a")  # anomaly: saved, and the next item loads
        assert top not in page.content() or "/items/" not in page.url

        def labelled() -> bool:
            return top in read_labels(settings.kafka).labels

        wait_until(labelled, "the label record on the labels topic")
        label = read_labels(settings.kafka).labels[top]
        assert (label.label, label.reviewer, label.model_version) == ("anomaly", "ana", "stream-a")
        assert label.score >= threshold
    finally:
        page_server.terminate()
        page_server.wait(timeout=30)
