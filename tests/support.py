"""Helpers of the tests that talk to the real Kafka broker and Redis server (see conftest.py)."""

from __future__ import annotations

import socket
import warnings
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError

from agad_stream.config import Settings
from deploy.services.kafka import KafkaService
from deploy.services.redis import RedisService
from deploy.services.settings import ServicesSettings, load_services_settings

WAIT_S = 120.0  # generous: the machine running the tests may be small and busy


@dataclass
class Services:
    """The Kafka broker and Redis server of this test session."""

    settings: Settings
    local: ServicesSettings = field(default_factory=load_services_settings)  # agad services' own
    started: list[str] = field(default_factory=list)  # what this session started and will stop

    def agad_managed(self, name: str) -> int | None:
        """PID of the agad-managed service the settings point at, or None if it is someone else's."""
        local = self.local
        if name == "kafka":
            service: KafkaService | RedisService = KafkaService(local)
            host, _, port = self.settings.kafka.bootstrap_servers.strip().rpartition(":")
            address = (host, port)
            expected = str(local.kafka_port)
        else:
            service = RedisService(local)
            parsed = redis.connection.parse_url(self.settings.redis.url)
            address = (parsed.get("host", ""), str(parsed.get("port", 6379)))
            expected = str(local.redis_port)
        points_here = address[0] in ("127.0.0.1", "localhost") and address[1] == expected
        return service.pid() if points_here else None

    def require_managed(self, name: str) -> None:
        """Skip a test that stops and restarts ``name`` when the session uses someone else's."""
        if self.agad_managed(name) is None:
            what = "the broker" if name == "kafka" else "Redis"
            pytest.skip(f"this test stops and restarts {what}, so it needs one that agad manages")

    def env(self) -> dict[str, str]:
        """Environment for a child ``agad`` process that sees the same services."""
        return services_env(self.settings)


def services_env(settings: Settings) -> dict[str, str]:
    local = load_services_settings()
    return {
        "AGAD_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "AGAD_REDIS__URL": settings.redis.url,
        "AGAD_SERVICES__STATE_DIR": str(local.state_dir),
        "AGAD_SERVICES__KAFKA_PORT": str(local.kafka_port),
        "AGAD_SERVICES__KAFKA_CONTROLLER_PORT": str(local.kafka_controller_port),
        "AGAD_SERVICES__KAFKA_HEAP_MB": str(local.kafka_heap_mb),
        "AGAD_SERVICES__REDIS_PORT": str(local.redis_port),
        "AGAD_SERVICES__START_TIMEOUT_S": str(local.start_timeout_s),
    }


def kafka_answers(settings: Settings) -> bool:
    """A metadata request to the configured bootstrap servers succeeds."""
    first = settings.kafka.bootstrap_servers.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    try:  # a closed port fails at once instead of after the client's bootstrap timeout
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=2).close()
    except (OSError, ValueError):
        return False
    try:
        admin = KafkaAdminClient(
            **settings.kafka.client_options(), request_timeout_ms=10_000, bootstrap_timeout_ms=10_000
        )
    except (KafkaError, OSError, ValueError):
        return False
    try:
        return bool(admin.describe_cluster().get("brokers"))
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def redis_answers(settings: Settings) -> bool:
    client = redis.Redis.from_url(
        settings.redis.url, **settings.redis.client_options(), socket_connect_timeout=2, socket_timeout=5
    )
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def create_topics(settings: Settings, partitions: dict[str, int]) -> None:
    admin = KafkaAdminClient(**settings.kafka.client_options())
    try:
        admin.create_topics([NewTopic(name, count, 1) for name, count in partitions.items()])
        admin.wait_for_topics(list(partitions), timeout_ms=int(WAIT_S * 1000))
    finally:
        admin.close()


def delete_topics(settings: Settings, names: list[str], groups: list[str] | None = None) -> None:
    """Delete topics, and consumer groups (their committed offsets) if given; missing ones are fine."""
    if not names and not groups:
        return
    try:
        admin = KafkaAdminClient(**settings.kafka.client_options(), bootstrap_timeout_ms=10_000)
    except KafkaError as exc:  # the broker is gone (a failed or interrupted test): nothing to clean
        warnings.warn(f"could not delete the test's topics {names}: {exc!r}", stacklevel=2)
        return
    try:
        if names:
            admin.delete_topics(names, raise_errors=False)
        if groups:
            admin.delete_groups(groups)  # reports, never raises, a group that does not exist
    except KafkaError as exc:
        warnings.warn(f"could not delete the test's topics {names}: {exc!r}", stacklevel=2)
    finally:
        admin.close()


class KafkaClients:
    """Producers, consumers and admin clients of the session's broker, closed after the test."""

    def __init__(self, settings: Settings) -> None:
        self.options = settings.kafka.client_options()
        self._open: list[Any] = []

    def producer(self, **config: Any) -> KafkaProducer:
        producer = KafkaProducer(**{**self.options, "acks": "all", **config})
        self._open.append(producer)
        return producer

    def consumer(self, *topics: str, **config: Any) -> KafkaConsumer:
        """A consumer reading from the earliest offset; committing is up to the test unless configured."""
        defaults = {"auto_offset_reset": "earliest", "enable_auto_commit": False}
        consumer = KafkaConsumer(*topics, **{**self.options, **defaults, **config})
        self._open.append(consumer)
        return consumer

    def admin(self) -> KafkaAdminClient:
        admin = KafkaAdminClient(**self.options)
        self._open.append(admin)
        return admin

    def close(self) -> None:
        for client in reversed(self._open):
            try:
                if isinstance(client, KafkaProducer):
                    client.close(timeout=10)
                elif isinstance(client, KafkaConsumer):
                    client.close(autocommit=False, timeout_ms=10_000)
                else:
                    client.close()
            except KafkaError:
                pass  # already closed, or the broker went away; nothing to release
        self._open.clear()
