"""Connections to Redis made one way for every process, with the message that says what to fix."""

from __future__ import annotations

import redis

from agad_stream.config import Settings
from agad_stream.errors import AgadError


def redis_client(settings: Settings, *, check: bool = True) -> redis.Redis:
    """A client of ``AGAD_REDIS__URL`` with 5 s timeouts; with ``check`` it must answer PING now."""
    client = redis.Redis.from_url(
        settings.redis.url, **settings.redis.client_options(), socket_timeout=5, socket_connect_timeout=5
    )
    if not check:
        return client
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        client.close()
        raise AgadError(
            f"cannot reach Redis at {settings.redis.url} ({exc}); check AGAD_REDIS__URL and "
            "AGAD_REDIS__PASSWORD, or start a local server with `agad services up`"
        ) from None
    return client
