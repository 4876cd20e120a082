"""The review side's parts, made from the settings: the store, the label producer, the reviewers."""

from __future__ import annotations

import redis

from agad_stream.config import Settings
from agad_stream.errors import AgadError
from agad_stream.review.auth import Reviewers
from agad_stream.review.decisions import Reviewing
from agad_stream.review.labels import label_producer
from agad_stream.review.store import ReviewStore


def reviewing_from(settings: Settings, client: redis.Redis) -> Reviewing:
    review = settings.review
    store = ReviewStore(client, settings.redis.key_prefix, review.claim_timeout_s, review.max_age_h * 3600)
    try:
        producer = label_producer(settings.kafka)
    except Exception as exc:  # kafka-python raises several types when no broker answers
        raise AgadError(
            f"cannot reach Kafka at {settings.kafka.bootstrap_servers} ({exc!r}); check "
            "AGAD_KAFKA__BOOTSTRAP_SERVERS, or start a local broker with `agad services up`"
        ) from None
    return Reviewing(store, producer, settings.kafka.topics.labels, review.defect_names())


def reviewers_from(settings: Settings) -> Reviewers:
    """The configured reviewers; AgadError when there are none or the setting is malformed."""
    try:
        reviewers = Reviewers(settings.review.reviewer_tokens())
    except ValueError as exc:
        raise AgadError(str(exc)) from None
    if not reviewers:
        raise AgadError(
            "no reviewers are configured: set AGAD_REVIEW__REVIEWERS to name:token pairs, e.g. "
            "AGAD_REVIEW__REVIEWERS=ana:<a long random token>,ben:<another>"
        )
    return reviewers
