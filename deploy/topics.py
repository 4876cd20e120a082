"""The Kafka topics of the contracts in DESIGN.md, made and inspected through Kafka's admin API.

:func:`topic_specs` says what each topic should be (partitions, replicas, configuration) from the
settings; :func:`create_topics` makes the missing ones and brings the configuration of existing
ones in line (it never removes partitions, and never changes a partition count, which would move
cameras between partitions); :func:`describe_topics` reports partitions, configuration and the lag
of every consumer group reading them.

- ``frames``, ``scores`` and the dead-letter topic get ``AGAD_KAFKA__PARTITIONS`` partitions: a
  consumer group uses at most one worker per partition.
- ``frames``, the dead-letter topic (it carries whole frames) and ``labels`` (it keeps each decided
  frame's image) accept records of ``AGAD_KAFKA__MAX_FRAME_BYTES`` plus room for headers.
- ``labels`` is compacted and kept for good: it is the label store, the latest decision per frame.
- ``models`` has one partition, so that promotions are read in the order they were made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError, TopicAlreadyExistsError

from agad_stream.config import KafkaSettings
from agad_stream.errors import AgadError

FOREVER = "-1"


@dataclass(frozen=True)
class TopicSpec:
    """One topic as the settings want it; ``variable`` is the setting naming it."""

    name: str
    variable: str
    partitions: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicOutcome:
    """What :func:`create_topics` did to one topic, and what it left for a person to decide."""

    name: str
    action: str  # "created", "updated" or "unchanged"
    changed: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def topic_specs(kafka: KafkaSettings) -> list[TopicSpec]:
    """Every topic of the contract, in the order of DESIGN.md."""
    topics, replicas = kafka.topics, kafka.replication_factor
    big = {"max.message.bytes": str(kafka.max_record_bytes)}
    return [
        TopicSpec(topics.frames, "AGAD_KAFKA__TOPICS__FRAMES", kafka.partitions, replicas, big),
        TopicSpec(topics.scores, "AGAD_KAFKA__TOPICS__SCORES", kafka.partitions, replicas),
        TopicSpec(topics.dead_letter, "AGAD_KAFKA__TOPICS__DEAD_LETTER", kafka.partitions, replicas, big),
        TopicSpec(
            topics.labels,
            "AGAD_KAFKA__TOPICS__LABELS",
            1,
            replicas,
            {**big, "cleanup.policy": "compact", "retention.ms": FOREVER, "retention.bytes": FOREVER},
        ),
        TopicSpec(topics.models, "AGAD_KAFKA__TOPICS__MODELS", 1, replicas),
    ]


def admin_client(kafka: KafkaSettings) -> KafkaAdminClient:
    """An admin client, or AgadError naming the settings to check."""
    try:
        return KafkaAdminClient(**kafka.client_options(), bootstrap_timeout_ms=15_000)
    except (KafkaError, OSError, ValueError) as exc:
        raise AgadError(
            f"cannot reach Kafka at {kafka.bootstrap_servers} ({exc!r}); check AGAD_KAFKA__BOOTSTRAP_SERVERS "
            "and the AGAD_KAFKA__SECURITY_* settings, or start a local broker with `agad services up`"
        ) from None


def create_topics(kafka: KafkaSettings, specs: list[TopicSpec] | None = None) -> list[TopicOutcome]:
    """Create the missing topics of ``specs`` (default: all of the contract) and align the configuration
    of existing ones; idempotent."""
    specs = topic_specs(kafka) if specs is None else specs
    admin = admin_client(kafka)
    try:
        existing = set(admin.list_topics())
        outcomes = []
        missing = [spec for spec in specs if spec.name not in existing]
        if missing:
            _create(admin, missing, kafka)
            outcomes += [TopicOutcome(spec.name, "created", dict(spec.configs)) for spec in missing]
        present = [spec for spec in specs if spec.name in existing]
        if present:
            outcomes += _align(admin, present)
        order = {spec.name: i for i, spec in enumerate(specs)}
        return sorted(outcomes, key=lambda outcome: order[outcome.name])
    except KafkaError as exc:
        raise AgadError(f"Kafka at {kafka.bootstrap_servers} refused to create the topics: {exc!r}") from None
    finally:
        admin.close()


def _create(admin: KafkaAdminClient, specs: list[TopicSpec], kafka: KafkaSettings) -> None:
    request = {
        spec.name: {
            "num_partitions": spec.partitions,
            "replication_factor": spec.replication_factor,
            "configs": spec.configs,
        }
        for spec in specs
    }
    try:
        admin.create_topics(request, timeout_ms=30_000)
    except TopicAlreadyExistsError:
        pass  # made by someone else a moment ago; _align on a second run would see it
    except KafkaError as exc:
        hint = ""
        if "replication" in repr(exc).lower():
            hint = "; the cluster has fewer brokers than AGAD_KAFKA__REPLICATION_FACTOR asks for"
        raise AgadError(
            f"Kafka at {kafka.bootstrap_servers} refused to create {', '.join(request)}: {exc!r}{hint}"
        ) from None
    admin.wait_for_topics(list(request), timeout_ms=60_000)


def _align(admin: KafkaAdminClient, specs: list[TopicSpec]) -> list[TopicOutcome]:
    """Set configuration that differs from the spec (other settings are left alone); note partition
    counts that differ, which only a person should change."""
    current = _configs(admin, [spec.name for spec in specs])
    partitions = {name: len(found) for name, found in _partitions(admin, [s.name for s in specs]).items()}
    outcomes = []
    changes = []
    for spec in specs:
        changed = {key: value for key, value in spec.configs.items() if current[spec.name].get(key) != value}
        notes = []
        have = partitions.get(spec.name, 0)
        if have != spec.partitions:
            notes.append(
                f"has {have} partitions where the settings say {spec.partitions}; left as it is (a new "
                "count moves cameras to other partitions; change it with Kafka's own tools if you mean it)"
            )
        if changed:
            changes.append(ConfigResource(ConfigResourceType.TOPIC, spec.name, configs=changed))
        outcomes.append(TopicOutcome(spec.name, "updated" if changed else "unchanged", changed, tuple(notes)))
    if changes:
        admin.alter_configs(changes, incremental=True)
    return outcomes


def _configs(admin: KafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    """The effective configuration of each topic (defaults included), name -> value."""
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    described = admin.describe_configs(resources, config_filter="all")
    found: dict[str, dict[str, str]] = {name: {} for name in names}
    for by_name in described.values():
        for topic, entries in by_name.items():
            found[topic] = {key: _value(entry) for key, entry in entries.items()}
    return found


def _partitions(admin: KafkaAdminClient, names: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Each topic's partitions as ``{partition, leader, replicas, isr}``, in partition order."""
    if not names:
        return {}
    return {
        topic["name"]: sorted(
            (
                {
                    "partition": p["partition_index"],
                    "leader": p["leader_id"],
                    "replicas": list(p["replica_nodes"]),
                    "isr": list(p["isr_nodes"]),
                }
                for p in topic["partitions"]
            ),
            key=lambda p: p["partition"],
        )
        for topic in admin.describe_topics(names)
    }


def _value(entry: Any) -> str:
    value = entry.get("value") if isinstance(entry, dict) else entry
    return "" if value is None else str(value)


@dataclass(frozen=True)
class GroupLag:
    group: str
    lag: int
    per_partition: dict[int, int]


@dataclass(frozen=True)
class TopicReport:
    """A topic as the cluster has it: partitions with leader and replicas, configuration, readers' lag."""

    name: str
    variable: str
    exists: bool
    partitions: list[dict[str, Any]] = field(default_factory=list)
    configs: dict[str, str] = field(default_factory=dict)
    end_offsets: dict[int, int] = field(default_factory=dict)
    groups: list[GroupLag] = field(default_factory=list)


def describe_topics(kafka: KafkaSettings) -> list[TopicReport]:
    """Every topic of the contract as the cluster has it, with the lag of each consumer group on it."""
    specs = topic_specs(kafka)
    admin = admin_client(kafka)
    consumer = None
    try:
        existing = set(admin.list_topics())
        present = [spec for spec in specs if spec.name in existing]
        configs = _configs(admin, [spec.name for spec in present]) if present else {}
        layout = _partitions(admin, [spec.name for spec in present])
        consumer = KafkaConsumer(**kafka.client_options(), enable_auto_commit=False)
        wanted = [TopicPartition(spec.name, p["partition"]) for spec in present for p in layout[spec.name]]
        ends = consumer.end_offsets(wanted) if wanted else {}
        committed = _committed_offsets(admin, {tp.topic for tp in wanted})
        reports = []
        for spec in specs:
            if spec.name not in existing:
                reports.append(TopicReport(spec.name, spec.variable, exists=False))
                continue
            topic_ends = {tp.partition: offset for tp, offset in ends.items() if tp.topic == spec.name}
            groups = []
            for group, offsets in sorted(committed.items()):
                mine = {tp.partition: offset for tp, offset in offsets.items() if tp.topic == spec.name}
                if mine:
                    lag = {p: max(end - mine.get(p, 0), 0) for p, end in topic_ends.items()}
                    groups.append(GroupLag(group, sum(lag.values()), lag))
            keys = {*spec.configs, "cleanup.policy", "retention.ms", "max.message.bytes"}
            reports.append(
                TopicReport(
                    spec.name,
                    spec.variable,
                    exists=True,
                    partitions=layout[spec.name],
                    configs={k: v for k, v in sorted(configs[spec.name].items()) if k in keys},
                    end_offsets=topic_ends,
                    groups=groups,
                )
            )
        return reports
    except KafkaError as exc:
        raise AgadError(f"cannot describe the topics on {kafka.bootstrap_servers}: {exc!r}") from None
    finally:
        if consumer is not None:
            consumer.close(autocommit=False)
        admin.close()


def _committed_offsets(admin: KafkaAdminClient, topics: set[str]) -> dict[str, dict[TopicPartition, int]]:
    """Committed offsets of every consumer group that has some on ``topics``."""
    groups = [group["group_id"] for group in admin.list_groups()]
    if not groups:
        return {}
    offsets = admin.list_group_offsets(groups)
    return {
        group: {tp: meta.offset for tp, meta in found.items() if tp.topic in topics and meta.offset >= 0}
        for group, found in offsets.items()
        if any(tp.topic in topics for tp in found)
    }
