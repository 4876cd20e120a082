"""Settings for every agad-stream process, read from ``AGAD_*`` environment variables.

Nested fields use ``__``: ``AGAD_KAFKA__BOOTSTRAP_SERVERS=broker1:9092``. A ``.env`` file in the
working directory is read too; command-line flags override both.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from agad_stream.errors import AgadError

ENV_PREFIX = "AGAD_"
ENV_NESTED_DELIMITER = "__"


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "agad-stream"


class TopicSettings(BaseModel):
    """Kafka topic names of the contracts in DESIGN.md."""

    frames: str = "frames"
    scores: str = "scores"
    dead_letter: str = "frames.dlq"
    labels: str = "labels"
    models: str = "models"


class KafkaSettings(BaseModel):
    """How to reach the Kafka cluster, and how to authenticate to it."""

    bootstrap_servers: str = Field("127.0.0.1:9092", description="comma-separated host:port list")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    client_id: str = "agad-stream"
    group_id: str = Field("agad-scorers", description="consumer group shared by all scorer workers")
    topics: TopicSettings = Field(default_factory=TopicSettings)

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments common to kafka-python producers, consumers and admin clients."""
        options: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()],
            "security_protocol": self.security_protocol,
            "client_id": self.client_id,
        }
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            value = getattr(self, name)
            if value is not None:
                options[name] = str(value)
        return options


class RedisSettings(BaseModel):
    """The Redis server holding the review queue."""

    url: str = Field("redis://127.0.0.1:6379/0", description="redis:// or rediss:// (TLS) URL")
    password: SecretStr | None = None
    ssl_ca_certs: Path | None = None
    key_prefix: str = Field("agad:", description="prefix of every key this project writes")

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis.from_url`` besides the URL."""
        options: dict[str, Any] = {}
        if self.password is not None:
            options["password"] = self.password.get_secret_value()
        if self.ssl_ca_certs is not None:
            options["ssl_ca_certs"] = str(self.ssl_ca_certs)
        return options


class ScorerSettings(BaseModel):
    """The streaming scorer: micro-batching, backend and alerting threshold."""

    backend: Literal["auto", "tensorrt", "onnxruntime", "torch"] = "auto"
    max_batch: int = Field(32, ge=1, le=1024, description="a batch closes at this many frames")
    max_wait_ms: float = Field(20.0, ge=0, le=10_000, description="... or after this latency budget")
    threshold: float | None = Field(None, description="overrides the model's calibrated threshold")
    metrics_port: int = Field(9400, ge=0, le=65535, description="Prometheus metrics; 0 turns them off")


class ReviewSettings(BaseModel):
    """The operators' review web page."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    token: SecretStr | None = Field(None, description="bearer token reviewers must present; unset = open")


class ServicesSettings(BaseModel):
    """Local Kafka and Redis that ``agad services`` runs for development, tests and the demo."""

    state_dir: Path = Field(default_factory=_default_state_dir)
    kafka_port: int = Field(9092, ge=1, le=65535)
    kafka_controller_port: int = Field(9093, ge=1, le=65535)
    kafka_heap_mb: int = Field(512, ge=128, le=65536)
    redis_port: int = Field(6379, ge=1, le=65535)
    start_timeout_s: float = Field(90.0, gt=0)


class Settings(BaseSettings):
    """All settings; see the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        env_file=".env",
        extra="ignore",
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    scorer: ScorerSettings = Field(default_factory=ScorerSettings)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    services: ServicesSettings = Field(default_factory=ServicesSettings)
    registry: Path = Field(Path("models"), description="model registry folder")


class SettingsError(AgadError):
    """Invalid configuration, phrased in terms of the environment variables a person sets."""


def env_var_name(location: tuple[str | int, ...]) -> str:
    """``("kafka", "topics", "frames")`` -> ``AGAD_KAFKA__TOPICS__FRAMES``."""
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(str(part).upper() for part in location)


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment, raising :class:`SettingsError` with actionable messages."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = env_var_name(tuple(error["loc"]))
            value = error.get("input")
            lines.append(f"{name}={value!r}: {error['msg']}")
        raise SettingsError(
            "invalid configuration:\n  " + "\n  ".join(lines) + "\nFix the environment variable or .env entry."
        ) from None


def flatten(settings: BaseModel, location: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every leaf setting keyed by its environment variable, secrets masked."""
    flat: dict[str, Any] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        here = (*location, name)
        if isinstance(value, BaseModel):
            flat.update(flatten(value, here))
        elif isinstance(value, SecretStr):
            flat[env_var_name(here)] = "********" if value.get_secret_value() else ""
        elif isinstance(value, Path):
            flat[env_var_name(here)] = str(value)
        else:
            flat[env_var_name(here)] = value
    return flat
