"""Settings for every agad-stream process, read from ``AGAD_*`` environment variables.

Nested fields use ``__``: ``AGAD_KAFKA__BOOTSTRAP_SERVERS=broker1:9092``. A ``.env`` file in the
working directory is read too; command-line flags override both.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal, TypeVar

import pydantic_settings
from dotenv import dotenv_values
from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from agad_stream.errors import AgadError

ENV_PREFIX = "AGAD_"
ENV_NESTED_DELIMITER = "__"
RECORD_OVERHEAD_BYTES = 64 * 1024
"""Room for a record's key, headers and batch framing beside the frame itself."""


RECONNECT_BACKOFF_MAX_MS = 1000
"""Longest wait between a Kafka client's attempts to reconnect. kafka-python's default, 30 s, let a
client sit out up to half a minute after the broker was back (Java's client waits at most 1 s)."""


class TopicSettings(BaseModel):
    """Kafka topic names of the contracts in DESIGN.md."""

    frames: str = Field("frames", description="input frames from cameras (key = camera id)")
    scores: str = Field("scores", description="every frame's verdict as JSON")
    dead_letter: str = Field("frames.dlq", description="frames that could not be scored, with the reason")
    labels: str = Field("labels", description="operators' decisions from the review page")
    models: str = Field("models", description="model promotion events; scorers hot-reload on them")


class KafkaSettings(BaseModel):
    """How to reach the Kafka cluster, and how to authenticate to it."""

    bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        pattern=r"^\s*[\w.\-\[\]:]+:\d{1,5}\s*(,\s*[\w.\-\[\]:]+:\d{1,5}\s*)*$",
        description="comma-separated host:port list",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how clients talk to the brokers"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism, with a SASL_* protocol"
    )
    sasl_username: str | None = Field(None, description="SASL user name")
    sasl_password: SecretStr | None = Field(None, description="SASL password (secret)")
    ssl_cafile: Path | None = Field(None, description="CA bundle that signed the brokers' certificates")
    ssl_certfile: Path | None = Field(None, description="client certificate for mutual TLS")
    ssl_keyfile: Path | None = Field(None, description="private key of the client certificate")
    client_id: str = Field("agad-stream", description="client id the brokers log and quota by")
    group_id: str = Field("agad-scorers", description="consumer group shared by all scorer workers")
    topics: TopicSettings = Field(default_factory=TopicSettings)
    partitions: int = Field(
        6,
        ge=1,
        le=10_000,
        description="partitions `agad topics create` gives frames, scores and the dead-letter topic: "
        "the most scorer workers one group can keep busy",
    )
    replication_factor: int = Field(
        1,
        ge=1,
        le=32,
        description="replicas of each topic `agad topics create` makes (3 on a production cluster)",
    )
    max_frame_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024 * 1024,
        le=1024 * 1024 * 1024,
        description="largest frame a camera may send, in bytes; the topics and agad's own clients are "
        "made to carry it",
    )

    @property
    def max_record_bytes(self) -> int:
        """The largest record the frames, dead-letter and labels topics carry: a frame plus its headers."""
        return self.max_frame_bytes + RECORD_OVERHEAD_BYTES

    def producer_size_options(self) -> dict[str, Any]:
        """kafka-python producer options that let a record of a whole frame through."""
        return {"max_request_size": self.max_record_bytes}

    def consumer_size_options(self) -> dict[str, Any]:
        """kafka-python consumer options that fetch a record of a whole frame."""
        return {
            "max_partition_fetch_bytes": self.max_record_bytes,
            "fetch_max_bytes": max(self.max_record_bytes, 50 * 1024 * 1024),
        }

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments common to kafka-python producers, consumers and admin clients."""
        options: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()],
            "security_protocol": self.security_protocol,
            "client_id": self.client_id,
            "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
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

    url: str = Field(
        "redis://127.0.0.1:6379/0",
        pattern=r"^(rediss?://|unix://)\S+$",
        description="redis:// or rediss:// (TLS) URL, or unix:// for a socket",
    )
    password: SecretStr | None = Field(None, description="password, if not in the URL (secret)")
    ssl_ca_certs: Path | None = Field(None, description="CA bundle for a rediss:// server")
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

    backend: Literal["auto", "tensorrt", "onnxruntime", "torch"] = Field(
        "auto", description="inference backend; auto picks the fastest available"
    )
    max_batch: int = Field(32, ge=1, le=1024, description="a batch closes at this many frames ...")
    max_wait_ms: float = Field(
        20.0,
        ge=0,
        le=60_000,
        description="... or after this many ms, whichever comes first (latency budget); "
        "if the model is busy then, when it is free",
    )
    lanes: int = Field(
        1,
        ge=1,
        le=64,
        description="ONNX Runtime on the CPU: batches scored at once, the cores shared out among them "
        "(docs/PERFORMANCE.md says when more than 1 pays)",
    )
    threshold: float | None = Field(None, description="overrides the model's calibrated threshold")
    metrics_port: int = Field(9400, ge=0, le=65535, description="Prometheus metrics; 0 turns them off")
    session_timeout_ms: int = Field(
        10_000,
        ge=1000,
        le=300_000,
        description="a worker silent this long is dropped from the group and its partitions move on",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="log lines as text, or one JSON object each"
    )


class ReviewSettings(BaseModel):
    """The operators' review page and the review queue's timing."""

    host: str = Field("127.0.0.1", description="address the review page binds to")
    port: int = Field(8080, ge=1, le=65535, description="port of the review page (and its /metrics)")
    reviewers: SecretStr | None = Field(
        None,
        description="who may review: comma-separated name:token pairs (secret); the name goes into each "
        "label; the page does not start without one",
    )
    defects: str = Field(
        "crack,scratch,stain,missing,other",
        description="defect names an operator can give a confirmed anomaly, comma-separated",
    )
    claim_timeout_s: float = Field(
        300.0,
        gt=0,
        le=86_400,
        description="an opened item stays an operator's this long, then returns to the queue",
    )
    max_age_h: float = Field(
        72.0, gt=0, description="undecided items older than this leave the queue (counted and logged)"
    )
    session_hours: float = Field(12.0, gt=0, le=720, description="how long a sign-in lasts")
    secure_cookies: bool = Field(
        False, description="mark the session cookie Secure (set when the page is served over HTTPS)"
    )

    def reviewer_tokens(self) -> dict[str, str]:
        """token -> reviewer name, from ``reviewers``; ValueError naming what is malformed."""
        found: dict[str, str] = {}
        text = self.reviewers.get_secret_value() if self.reviewers else ""
        for pair in filter(None, (p.strip() for p in text.split(","))):
            name, sep, token = pair.partition(":")
            if not sep or not name.strip() or len(token.strip()) < 8:
                raise ValueError(
                    "AGAD_REVIEW__REVIEWERS takes name:token pairs separated by commas, each token at least "
                    f"8 characters; entry {len(found) + 1} is not one"
                )
            found[token.strip()] = name.strip()
        return found

    def defect_names(self) -> list[str]:
        return [name.strip() for name in self.defects.split(",") if name.strip()]


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
    registry: Path = Field(Path("models"), description="model registry folder")


class SettingsError(AgadError):
    """Invalid configuration, phrased in terms of the environment variables a person sets."""


def env_var_name(location: tuple[str | int, ...]) -> str:
    """``("kafka", "topics", "frames")`` -> ``AGAD_KAFKA__TOPICS__FRAMES``."""
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(str(part).upper() for part in location)


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment, raising :class:`SettingsError` with actionable messages."""
    return read_settings(Settings, **overrides)


SettingsType = TypeVar("SettingsType", bound=BaseSettings)


def read_settings(cls: type[SettingsType], location: tuple[str, ...] = (), **overrides: Any) -> SettingsType:
    """An instance of ``cls``, whose variables are named ``AGAD_`` + ``location`` + field; errors as
    :class:`SettingsError` naming the variable and what it accepts."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = env_var_name((*location, *error["loc"]))
            value = error.get("input")
            lines.append(f"{name}={value!r}: {error['msg']}")
    except pydantic_settings.SettingsError as exc:
        # A variable naming a whole group (AGAD_KAFKA, AGAD_KAFKA__TOPICS) must hold a JSON object.
        lines = _unparsable_groups(str(exc))
    raise SettingsError(
        "invalid configuration:\n  " + "\n  ".join(lines) + "\nFix the environment variable or .env entry."
    )


def _unparsable_groups(message: str) -> list[str]:
    """Explain pydantic-settings' "error parsing value for field ..." in terms of variable names."""
    match = re.search(r'field "([^"]+)"', message)
    group = env_var_name((match.group(1),)) if match else ENV_PREFIX
    variables = {**_dotenv_values(), **os.environ}
    lines = []
    for name, value in sorted(variables.items()):
        upper = name.upper()
        if upper != group and not upper.startswith(group + ENV_NESTED_DELIMITER):
            continue
        parts = upper[len(ENV_PREFIX) :].lower().split(ENV_NESTED_DELIMITER)
        if not _names_a_group(parts):
            continue
        try:
            json.loads(value or "")
        except ValueError:
            lines.append(
                f"{upper}={value!r}: a group of settings takes a JSON object; "
                f"or set its fields one by one as {upper}__<FIELD>"
            )
    return lines or [f"{group} or one of {group}__*: {message}"]


def _names_a_group(parts: list[str]) -> bool:
    model: type[BaseModel] = Settings
    for position, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return False
        if position == len(parts) - 1:
            return True
        model = annotation
    return False


def _dotenv_values() -> dict[str, str]:
    env_file = Settings.model_config.get("env_file")
    if not isinstance(env_file, str) or not Path(env_file).is_file():
        return {}
    return {key: value for key, value in dotenv_values(env_file).items() if value is not None}


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


def routing_env(settings: Settings) -> dict[str, str]:
    """The variables that point another `agad` process where ``settings`` point: the broker, Redis,
    every topic, the consumer group, the key prefix and the registry (a test's or a benchmark's own)."""
    kafka = settings.kafka
    env = {
        env_var_name(("kafka", "topics", name)): getattr(kafka.topics, name)
        for name in type(kafka.topics).model_fields
    }
    env.update(
        {
            env_var_name(("kafka", "bootstrap_servers")): kafka.bootstrap_servers,
            env_var_name(("kafka", "group_id")): kafka.group_id,
            env_var_name(("redis", "url")): settings.redis.url,
            env_var_name(("redis", "key_prefix")): settings.redis.key_prefix,
            env_var_name(("registry",)): str(settings.registry),
        }
    )
    return env
