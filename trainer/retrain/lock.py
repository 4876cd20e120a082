"""One retrain at a time, across hosts: a lock in Redis that expires unless its holder renews it."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from contextlib import suppress
from types import TracebackType

import redis

from agad_stream.errors import AgadError

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class RetrainLock:
    """``with RetrainLock(client, key, ttl_s):`` holds ``key`` for this process, renewing it every third
    of ``ttl_s``; a holder that dies (SIGKILL, a lost host) lets it expire after at most ``ttl_s``."""

    def __init__(self, client: redis.Redis, key: str, ttl_s: float) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = int(ttl_s * 1000)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)

    def __enter__(self) -> RetrainLock:
        if not self.client.set(self.key, self.token, nx=True, px=self.ttl_ms):
            holder = self.client.get(self.key)
            left = self.client.pttl(self.key)
            raise AgadError(
                f"another retrain is running ({holder.decode() if isinstance(holder, bytes) else holder}); "
                f"this one stops. The lock {self.key} frees when it finishes, or within "
                f"{max(int(left), 0) / 1000:.0f} s if it died"
            )
        self._renewer = threading.Thread(target=self._keep, daemon=True)
        self._renewer.start()
        return self

    def _keep(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            with suppress(redis.RedisError):  # the next renewal tries again
                self._renew(keys=[self.key], args=[self.token, self.ttl_ms])

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        with suppress(redis.RedisError):  # it expires on its own
            self._release(keys=[self.key], args=[self.token])
