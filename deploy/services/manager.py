"""Bring the local services up and down together, and report on them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from agad_stream.errors import AgadError
from deploy.services.kafka import KafkaService
from deploy.services.redis import RedisService
from deploy.services.settings import ServicesSettings


class Service(Protocol):
    name: str

    @property
    def port(self) -> int: ...

    def pid(self) -> int | None: ...

    def healthy(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    port: int
    healthy: bool

    @property
    def state(self) -> str:
        if self.pid is None:
            return "healthy (not ours)" if self.healthy else "stopped"
        return "running" if self.healthy else "unhealthy"


def services(settings: ServicesSettings, only: str | None = None) -> list[Service]:
    everything: list[Service] = [KafkaService(settings), RedisService(settings)]
    if only is None:
        return everything
    chosen = [service for service in everything if service.name == only]
    if not chosen:
        raise AgadError(f"unknown service {only!r}; choose kafka or redis")
    return chosen


def up(settings: ServicesSettings, only: str | None = None) -> list[str]:
    """Start what is not running yet; returns the names of the services this call started."""
    started = []
    for service in services(settings, only):
        if service.pid() is not None:
            if service.healthy():
                continue
            raise AgadError(
                f"{service.name} (PID {service.pid()}) is running but not healthy on port {service.port}; "
                f"run `agad services down` and then `agad services up`"
            )
        if service.healthy():
            raise AgadError(
                f"port {service.port} already serves {service.name} that agad did not start; stop it, or "
                f"point AGAD_SERVICES__{service.name.upper()}_PORT at a free port"
            )
        service.start()
        started.append(service.name)
    return started


def down(settings: ServicesSettings, only: str | None = None) -> list[str]:
    """Stop the services we started; returns the names of those that were running."""
    stopped = []
    for service in reversed(services(settings, only)):
        if service.pid() is not None:
            service.stop()
            stopped.append(service.name)
    return stopped


def status(settings: ServicesSettings, only: str | None = None) -> list[ServiceStatus]:
    return [ServiceStatus(s.name, s.pid(), s.port, s.healthy()) for s in services(settings, only)]
