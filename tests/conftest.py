"""Fixtures giving tests a real Kafka broker and a real Redis server.

Once per session the fixtures find the services: the ones the ``AGAD_`` settings point to when they
answer (``./scripts/test`` starts them with ``agad services up``), otherwise local ones started here
through :mod:`deploy.services.manager` and stopped at the end of the session, also when tests fail.
Each test then gets its own topics, consumer group and Redis key prefix, removed after it.

Fixtures for other tests: ``settings`` (a :class:`~agad_stream.config.Settings` whose topics,
group and key prefix belong to the test), ``make_topic``, ``kafka_clients``, ``redis_client``,
``services`` and ``agad`` (runs the real command line).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from agad_stream.config import ENV_PREFIX, Settings, TopicSettings, load_settings
from deploy.services import manager
from deploy.topics import create_topics as create_contract_topics
from deploy.topics import topic_specs
from tests.stream_support import ServeProcess, worker_env
from tests.support import (
    KafkaClients,
    Services,
    create_topics,
    delete_topics,
    kafka_answers,
    redis_answers,
)

# kafka-python narrates every connection and rebalance at INFO.
logging.getLogger("kafka").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    """The session's services: the configured ones if they answer, else local ones started here."""
    settings = load_settings()
    session = Services(settings)
    try:
        if not kafka_answers(settings):
            local = f"127.0.0.1:{session.local.kafka_port}"
            kafka = settings.kafka.model_copy(
                update={"bootstrap_servers": local, "security_protocol": "PLAINTEXT", "sasl_mechanism": None}
            )
            settings = session.settings = settings.model_copy(update={"kafka": kafka})
            _start(session, "kafka")
        if not redis_answers(settings):
            url = f"redis://127.0.0.1:{session.local.redis_port}/0"
            redis_settings = settings.redis.model_copy(update={"url": url, "password": None})
            settings = session.settings = settings.model_copy(update={"redis": redis_settings})
            _start(session, "redis")
        yield session
    finally:
        for name in reversed(session.started):
            manager.down(session.local, name)


def _start(session: Services, name: str) -> None:
    try:
        session.started += manager.up(session.local, name)
    except BaseException:
        # A failed start cleans up after itself; stop whatever this session did get running.
        for started in reversed(session.started):
            manager.down(session.local, started)
        session.started.clear()
        raise


def _slug(text: str, length: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:length].strip("-.")


@pytest.fixture
def test_id(request: pytest.FixtureRequest) -> str:
    """A name no other test (or earlier run) uses: test name plus a random suffix."""
    return f"test-{_slug(request.node.name)}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_topic(services: Services, test_id: str) -> Iterator[Callable[..., str]]:
    """``make_topic(partitions=4, suffix="x")`` creates a topic of this test; all are deleted after it."""
    created: list[str] = []

    def make(partitions: int = 4, suffix: str | None = None) -> str:
        name = f"{test_id}.{suffix or len(created)}"
        create_topics(services.settings, {name: partitions})
        created.append(name)
        return name

    yield make
    delete_topics(services.settings, created)


@pytest.fixture
def redis_prefix(services: Services, test_id: str) -> Iterator[str]:
    """A key prefix of this test; every key under it is deleted after the test."""
    prefix = f"agad-test:{test_id}:"
    yield prefix
    client = redis.Redis.from_url(services.settings.redis.url, **services.settings.redis.client_options())
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def bare_settings(services: Services, test_id: str, redis_prefix: str, tmp_path: Path) -> Iterator[Settings]:
    """Settings pointing at the session's services, with topic names, group and key prefix of this
    test and an empty temporary model registry; the topics are not made (``settings`` makes them).
    Whatever topics of those names exist after the test are deleted, with the group's offsets."""
    base = services.settings
    topics = TopicSettings(
        frames=f"{test_id}.frames",
        scores=f"{test_id}.scores",
        dead_letter=f"{test_id}.frames.dlq",
        labels=f"{test_id}.labels",
        models=f"{test_id}.models",
    )
    kafka = base.kafka.model_copy(
        update={"topics": topics, "group_id": f"{test_id}.scorers", "partitions": 4}
    )
    redis_settings = base.redis.model_copy(update={"key_prefix": redis_prefix})
    try:
        yield base.model_copy(
            update={"kafka": kafka, "redis": redis_settings, "registry": tmp_path / "registry"}
        )
    finally:
        delete_topics(base, [spec.name for spec in topic_specs(kafka)], groups=[kafka.group_id])


@pytest.fixture
def settings(bare_settings: Settings) -> Settings:
    """``bare_settings`` with the topics of DESIGN.md's contracts made as `agad topics create` makes
    them ("frames", "scores" and the dead-letter topic with 4 partitions)."""
    create_contract_topics(bare_settings.kafka)
    return bare_settings


@pytest.fixture
def redis_client(settings: Settings) -> Iterator[redis.Redis]:
    """A client of the session's Redis that returns str; keep keys under ``settings.redis.key_prefix``."""
    client = redis.Redis.from_url(
        settings.redis.url, **settings.redis.client_options(), decode_responses=True
    )
    yield client
    client.close()


@pytest.fixture
def kafka_clients(settings: Settings) -> Iterator[KafkaClients]:
    clients = KafkaClients(settings)
    yield clients
    clients.close()


def _agad_command() -> list[str]:
    beside = Path(sys.executable).with_name("agad")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("agad")
    return [found] if found else [sys.executable, "-m", "agad_stream.cli.main"]


@pytest.fixture
def agad(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the installed ``agad`` command: ``agad("config", "show", env={...})``.

    The child sees no ``AGAD_`` variable except those in ``env`` and runs in an empty folder, so
    neither the caller's shell nor a ``.env`` file changes what it does.
    """

    def run(
        *args: str, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        clean = {name: value for name, value in os.environ.items() if not name.upper().startswith(ENV_PREFIX)}
        return subprocess.run(
            [*_agad_command(), *args],
            env={**clean, **(env or {})},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


@pytest.fixture(scope="session")
def stream_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two small exported models (32 px grey naive generators, different weights) for scorer tests."""
    from deploy.onnx_export import export_onnx
    from tests.model_dirs import make_model_dir

    models = {}
    for name, seed in (("a", 0), ("b", 1)):
        directory = tmp_path_factory.mktemp(f"stream-model-{name}")
        export_onnx(make_model_dir(directory, seed=seed, version=f"stream-{name}"))
        models[name] = directory
    return models


@pytest.fixture
def serve(bare_settings: Settings, tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    """``serve(model, name="w1", **scorer_settings)`` starts `agad serve`; all are killed after the test."""
    started: list[ServeProcess] = []

    def start(model: Path, name: str = "worker", *args: str, **scorer: object) -> ServeProcess:
        process = ServeProcess(
            [*_agad_command(), "serve", "--model", str(model), *args],
            worker_env(bare_settings, **scorer),
            tmp_path / f"{name}.log",
            tmp_path,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait(timeout=30)
        # pytest shows this only when the test failed: what each worker was doing
        print(f"--- {process.log.name} (last 6000 characters)\n{process.text()[-6000:]}")
