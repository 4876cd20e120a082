"""Kafka over TLS with SASL/SCRAM and Redis over TLS with a password, end to end through `agad serve`;
no secret in any log, error, metric or `agad config show`.

The test makes its own certificate authority and server certificate (openssl), starts a broker of
its own with a SASL_SSL listener beside the plaintext one it is managed through, adds a SCRAM user
through Kafka's admin API, and starts a TLS-only Redis with a password.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ScramMechanism, UserScramCredentialUpsertion
from pydantic import SecretStr

from agad_stream.config import Settings, TopicSettings, load_settings
from deploy.services.kafka import KafkaService
from deploy.services.settings import ServicesSettings
from tests.stream_support import ServeProcess, jpeg, read_topic
from tests.support import WAIT_S

KAFKA_SECRET = "scram-Pa55-kafka-7f1c"
REDIS_SECRET = "redis-Pa55-tls-9d2e"
USER = "scorer"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _certificates(directory: Path) -> dict[str, Path]:
    """A CA, and a server certificate for 127.0.0.1 signed by it (PEM)."""
    run = lambda *args: subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=agad-test-ca")  # fmt: skip
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    run("pkcs8", "-topk8", "-nocrypt", "-in", "server.key", "-out", "server.pk8")
    keystore = directory / "keystore.pem"
    keystore.write_text((directory / "server.pk8").read_text() + (directory / "server.pem").read_text())
    return {
        "ca": directory / "ca.pem",
        "cert": directory / "server.pem",
        "key": directory / "server.key",
        "keystore": keystore,
    }


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[Settings]:
    """A SASL_SSL broker and a TLS Redis of this test's, and settings that reach them."""
    certs = _certificates(tmp_path)
    local = ServicesSettings(
        state_dir=tmp_path / "state", kafka_port=_free_port(), kafka_controller_port=_free_port()
    )
    plain, tls, controller = local.kafka_port, _free_port(), local.kafka_controller_port
    broker = KafkaService(
        local,
        {
            "listeners": f"PLAINTEXT://127.0.0.1:{plain},SASL_SSL://127.0.0.1:{tls},CONTROLLER://127.0.0.1:{controller}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{plain},SASL_SSL://127.0.0.1:{tls}",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL",
            "sasl.enabled.mechanisms": "SCRAM-SHA-256",
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(certs["keystore"]),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(certs["ca"]),
        },
    )  # fmt: skip
    broker.start()
    redis_port = _free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(redis_port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(certs["cert"]), "--tls-key-file", str(certs["key"]),
         "--tls-ca-cert-file", str(certs["ca"]), "--tls-auth-clients", "no", "--requirepass", REDIS_SECRET,
         "--dir", str(tmp_path), "--save", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        admin = KafkaAdminClient(bootstrap_servers=[f"127.0.0.1:{plain}"])
        try:
            admin.alter_user_scram_credentials(
                [
                    UserScramCredentialUpsertion(
                        USER, ScramMechanism.SCRAM_SHA_256, KAFKA_SECRET, iterations=4096
                    )
                ]
            )
        finally:
            admin.close()
        base = load_settings()
        kafka = base.kafka.model_copy(
            update={
                "bootstrap_servers": f"127.0.0.1:{tls}",
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-256",
                "sasl_username": USER,
                "sasl_password": SecretStr(KAFKA_SECRET),
                "ssl_cafile": certs["ca"],
                "topics": TopicSettings(),
                "group_id": "secure-scorers",
                "partitions": 2,
            }
        )
        redis_settings = base.redis.model_copy(
            update={
                "url": f"rediss://127.0.0.1:{redis_port}/0",
                "password": SecretStr(REDIS_SECRET),
                "ssl_ca_certs": certs["ca"],
                "key_prefix": "secure:",
            }
        )
        yield base.model_copy(update={"kafka": kafka, "redis": redis_settings})
    finally:
        server.terminate()
        server.wait(timeout=30)
        broker.stop()


def _env(settings: Settings) -> dict[str, str]:
    kafka, store = settings.kafka, settings.redis
    return {
        "AGAD_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "AGAD_KAFKA__SECURITY_PROTOCOL": kafka.security_protocol,
        "AGAD_KAFKA__SASL_MECHANISM": str(kafka.sasl_mechanism),
        "AGAD_KAFKA__SASL_USERNAME": str(kafka.sasl_username),
        "AGAD_KAFKA__SASL_PASSWORD": KAFKA_SECRET,
        "AGAD_KAFKA__SSL_CAFILE": str(kafka.ssl_cafile),
        "AGAD_KAFKA__GROUP_ID": kafka.group_id,
        "AGAD_KAFKA__PARTITIONS": "2",
        "AGAD_REDIS__URL": store.url,
        "AGAD_REDIS__PASSWORD": REDIS_SECRET,
        "AGAD_REDIS__SSL_CA_CERTS": str(store.ssl_ca_certs),
        "AGAD_REDIS__KEY_PREFIX": store.key_prefix,
        "AGAD_SCORER__BACKEND": "onnxruntime",
        "AGAD_SCORER__THRESHOLD": "-1e9",
    }


def _agad(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGAD_")}
    command = [str(Path(sys.executable).with_name("agad")), *args]
    return subprocess.run(command, env={**clean, **env}, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_serve_over_sasl_ssl_and_tls_redis_without_leaking_a_secret(
    secure: Settings, stream_models: dict[str, Path], tmp_path: Path
) -> None:
    env = _env(secure)
    made = _agad("topics", "create", env=env, cwd=tmp_path)  # the admin API over SASL_SSL too
    assert made.returncode == 0, made.stderr
    metrics_port = _free_port()
    worker = ServeProcess(
        [str(Path(sys.executable).with_name("agad")), "serve", "--model", str(stream_models["a"])],
        {**env, "AGAD_SCORER__METRICS_PORT": str(metrics_port)},
        tmp_path / "serve.log",
        tmp_path,
    )
    try:
        worker.wait_for(lambda text: "assigned partitions [" in text, "the worker over SASL_SSL")
        producer = KafkaProducer(**secure.kafka.client_options(), acks="all")
        headers = lambda n: [("frame_id", f"s-{n}".encode()), ("camera_id", b"cam-00"),  # noqa: E731
                             ("ts_ms", b"1700000000000"), ("content_type", b"image/jpeg")]  # fmt: skip
        for n in range(6):
            producer.send(secure.kafka.topics.frames, key=b"cam-00", value=jpeg(n), headers=headers(n))
        producer.flush()
        producer.close()
        scores = read_topic(
            secure, secure.kafka.topics.scores, lambda r: len(r) >= 6, "6 scores over SASL_SSL"
        )
        assert {json.loads(r.value)["frame_id"] for r in scores} == {f"s-{n}" for n in range(6)}
        client = redis.Redis.from_url(secure.redis.url, **secure.redis.client_options())
        deadline = time.monotonic() + WAIT_S
        while client.xlen("secure:review:pending") < 6 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.xlen("secure:review:pending") == 6  # every review item over TLS, with the password
        client.close()
        metrics = (
            urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
        )
    finally:
        worker.stop()
    shown = (
        _agad("config", "show", env=env, cwd=tmp_path).stdout
        + _agad("config", "show", "--json", env=env, cwd=tmp_path).stdout
    )
    model = str(stream_models["a"])
    wrong_kafka = {**env, "AGAD_KAFKA__SASL_PASSWORD": KAFKA_SECRET + "-wrong"}
    refused = _agad("serve", "--model", model, env=wrong_kafka, cwd=tmp_path)
    assert refused.returncode == 2 and "AGAD_KAFKA__" in refused.stderr
    wrong_redis = {**env, "AGAD_REDIS__PASSWORD": REDIS_SECRET + "-wrong"}
    no_redis = _agad("serve", "--model", model, env=wrong_redis, cwd=tmp_path)
    assert no_redis.returncode == 2 and "AGAD_REDIS__PASSWORD" in no_redis.stderr
    for text in (
        worker.text(),
        metrics,
        shown,
        refused.stdout + refused.stderr,
        no_redis.stdout + no_redis.stderr,
    ):
        for secret in (KAFKA_SECRET, REDIS_SECRET):
            assert secret not in text
