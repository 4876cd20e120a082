"""A local Redis server on 127.0.0.1 with append-only persistence."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

from agad_stream.errors import AgadError
from deploy.services.process import running_pid, stop_process, wait_until
from deploy.services.settings import ServicesSettings

BINARY = "redis-server"


def _redis_server_binary() -> str:
    """Find redis-server, installing Debian's package when we are root and it is missing."""
    found = shutil.which(BINARY)
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("redis-server is missing; installing it with apt-get ...", flush=True)
        for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "redis-server"]):
            subprocess.run(
                command,
                check=False,
                stdout=subprocess.DEVNULL,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
        found = shutil.which(BINARY)
        if found:
            return found
    raise AgadError("redis-server is not installed: run `apt-get install -y redis-server` (as root)")


class RedisService:
    """Start, stop and health-check the local Redis described by :class:`ServicesSettings`."""

    name = "redis"

    def __init__(self, settings: ServicesSettings) -> None:
        self.settings = settings
        self.root = settings.state_dir / "redis"
        self.pidfile = self.root / "redis.pid"
        self.log_file = self.root / "redis.log"

    @property
    def port(self) -> int:
        return self.settings.redis_port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def pid(self) -> int | None:
        return running_pid(self.pidfile, BINARY)

    def healthy(self) -> bool:
        """PING answered."""
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1, socket_timeout=2)
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def start(self) -> None:
        binary = _redis_server_binary()
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.pidfile.unlink(missing_ok=True)
        result = subprocess.run(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--daemonize",
                "yes",
                "--dir",
                str(data),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--pidfile",
                str(self.pidfile),
                "--logfile",
                str(self.log_file),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise AgadError(f"redis-server failed to start:\n{result.stdout}{result.stderr}")
        started = time.monotonic()

        def alive() -> bool:
            # The daemon writes its PID file a moment after forking.
            return self.pid() is not None or time.monotonic() - started < 5

        try:
            wait_until(
                self.healthy,
                self.settings.start_timeout_s,
                f"Redis on 127.0.0.1:{self.port} (see {self.log_file})",
                alive=alive,
            )
        except BaseException:
            self.stop()  # never leave a half-started server behind
            raise

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            stop_process(pid, "Redis", timeout_s=30)
        self.pidfile.unlink(missing_ok=True)
