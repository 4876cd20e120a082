"""A single-node Apache Kafka 4 broker (KRaft, no ZooKeeper) on 127.0.0.1.

The broker's jars are resolved once from Maven by ``deploy/kafka/pom.xml`` and cached per pom
content, so every state directory shares them. Storage is formatted once; the log directory
persists across restarts, so messages and committed offsets survive ``down`` and ``up``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

from agad_stream.errors import AgadError
from deploy.services.process import running_pid, stop_process, wait_until
from deploy.services.settings import ServicesSettings

POM = Path(__file__).resolve().parent.parent / "kafka" / "pom.xml"
MAIN_CLASS = "kafka.Kafka"

_LOG4J2 = """\
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
"""


def _jar_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    return Path(base) / "agad-stream" / f"kafka-jars-{digest}"


class KafkaService:
    """Start, stop and health-check the local broker described by :class:`ServicesSettings`."""

    name = "kafka"

    def __init__(self, settings: ServicesSettings, extra: dict[str, str] | None = None) -> None:
        """``extra`` broker properties replace or add to the defaults (another listener, TLS, SASL)."""
        self.settings = settings
        self.extra = dict(extra or {})
        self.root = settings.state_dir / "kafka"
        self.data_dir = self.root / "data"
        self.pidfile = self.root / "kafka.pid"
        self.log_file = self.root / "server.log"
        self.jars = _jar_cache_dir()

    @property
    def port(self) -> int:
        return self.settings.kafka_port

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def pid(self) -> int | None:
        return running_pid(self.pidfile, MAIN_CLASS)

    def healthy(self) -> bool:
        """A metadata request answered, not merely an open port."""
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:  # fail fast on a closed port: the admin client would retry its bootstrap for ~30 s
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=[self.bootstrap], request_timeout_ms=5000, bootstrap_timeout_ms=5000
            )
        except (KafkaError, OSError, ValueError):
            return False
        try:
            return bool(admin.describe_cluster().get("brokers"))
        except (KafkaError, OSError):
            return False
        finally:
            admin.close()

    def start(self) -> None:
        self._ensure_jars()
        self.root.mkdir(parents=True, exist_ok=True)
        properties = self._write_config()
        if not (self.data_dir / "meta.properties").exists():
            self._format(properties)
        java = shutil.which("java")
        if java is None:
            raise AgadError(
                "Java 17 or newer is needed to run the Kafka broker: apt-get install openjdk-17-jre"
            )
        heap_mb = self.settings.kafka_heap_mb
        command = [
            java,
            f"-Xmx{heap_mb}m",
            f"-Xms{min(256, heap_mb)}m",
            *self._java_args(),
            MAIN_CLASS,
            str(properties),
        ]
        with open(self.root / "stdout.log", "ab") as out:
            # Its own session: a Ctrl-C in the terminal that ran `up` does not reach the broker.
            process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pidfile.write_text(str(process.pid))
        try:
            wait_until(
                self.healthy,
                self.settings.start_timeout_s,
                f"Kafka broker on {self.bootstrap} (see {self.log_file})",
                alive=lambda: process.poll() is None,
            )
        except BaseException:
            # Never leave a half-started broker behind (a timeout, Ctrl-C during start-up).
            if process.poll() is None:
                stop_process(process.pid, "Kafka broker", timeout_s=60)
            process.wait()
            self.pidfile.unlink(missing_ok=True)
            raise

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            stop_process(pid, "Kafka broker", timeout_s=60)
        self.pidfile.unlink(missing_ok=True)

    def _java_args(self) -> list[str]:
        return [
            "-cp",
            str(self.jars / "*"),
            f"-Dlog4j2.configurationFile={self.root / 'log4j2.properties'}",
            "-XX:+UseG1GC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
        ]

    def _ensure_jars(self) -> None:
        complete = self.jars / ".complete"
        if complete.exists():
            return
        mvn = shutil.which("mvn")
        if mvn is None:
            raise AgadError(
                "Maven (mvn) is needed once to fetch the Kafka broker jars: apt-get install maven"
            )
        self.jars.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={self.jars}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise AgadError(f"resolving the Kafka jars with Maven failed:\n{result.stdout}{result.stderr}")
        complete.touch()

    def _write_config(self) -> Path:
        s = self.settings
        controller = f"127.0.0.1:{s.kafka_controller_port}"
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{controller}",
            "listeners": f"PLAINTEXT://{self.bootstrap},CONTROLLER://{controller}",
            "advertised.listeners": f"PLAINTEXT://{self.bootstrap}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "auto.create.topics.enable": "true",
            # One broker: every internal topic has a single replica.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Tests create many short-lived groups; do not wait for more members to join.
            "group.initial.rebalance.delay.ms": "0",
        }
        properties.update(self.extra)
        path = self.root / "server.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
        (self.root / "log4j2.properties").write_text(_LOG4J2.format(log=self.log_file))
        return path

    def _format(self, properties: Path) -> None:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        java = shutil.which("java") or "java"
        result = subprocess.run(
            [
                java,
                *self._java_args(),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(properties),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise AgadError(
                f"formatting Kafka storage in {self.data_dir} failed:\n{result.stdout}{result.stderr}"
            )
