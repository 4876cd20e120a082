"""Settings of the local Kafka and Redis that ``agad services`` runs: ``AGAD_SERVICES__*`` variables.

They belong to deploy alone (a scorer host runs against a real cluster and never reads them).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from agad_stream.config import ENV_NESTED_DELIMITER, ENV_PREFIX, read_settings

LOCATION = ("services",)
PREFIX = ENV_PREFIX + "SERVICES" + ENV_NESTED_DELIMITER


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "agad-stream"


class ServicesSettings(BaseSettings):
    """Local Kafka and Redis that ``agad services`` runs for development, tests and the demo."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_file=".env", extra="ignore")

    state_dir: Path = Field(
        default_factory=_default_state_dir, description="data, logs and PID files of the local services"
    )
    kafka_port: int = Field(9092, ge=1, le=65535, description="local broker's client port on 127.0.0.1")
    kafka_controller_port: int = Field(9093, ge=1, le=65535, description="local KRaft controller port")
    kafka_heap_mb: int = Field(512, ge=128, le=65536, description="Java heap of the local broker")
    redis_port: int = Field(6379, ge=1, le=65535, description="local Redis port on 127.0.0.1")
    start_timeout_s: float = Field(90.0, gt=0, description="how long `agad services up` waits for health")


def load_services_settings() -> ServicesSettings:
    """The ``AGAD_SERVICES__*`` settings; SettingsError naming the variable when one is invalid."""
    return read_settings(ServicesSettings, LOCATION)
