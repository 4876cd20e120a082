"""Who is reviewing: named reviewers with tokens, sessions in Redis, and a CSRF token per session.

A reviewer signs in with their token (``AGAD_REVIEW__REVIEWERS``, ``name:token`` pairs); the page
then keeps a random session id in an HttpOnly, SameSite=Strict cookie, and the session (reviewer
and CSRF token) in Redis, so that several page processes share it. Every state-changing request
must also carry the session's CSRF token. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

import redis

COOKIE = "agad_review_session"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class Session:
    session_id: str
    reviewer: str
    csrf: str


class Reviewers:
    """The configured reviewers, by token."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self._tokens = tokens

    def __bool__(self) -> bool:
        return bool(self._tokens)

    @property
    def names(self) -> set[str]:
        return set(self._tokens.values())

    def who(self, token: str) -> str | None:
        """The reviewer whose token this is, or None (checked against every token, in constant time)."""
        found = None
        for known, name in self._tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                found = name
        return found


class Sessions:
    """Sessions under ``prefix`` in Redis, each lasting ``ttl_s`` from sign-in."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_s: float) -> None:
        self.client = client
        self.prefix = f"{prefix}review:session:"
        self.ttl_s = int(ttl_s)

    def start(self, reviewer: str) -> Session:
        session = Session(secrets.token_urlsafe(32), reviewer, secrets.token_urlsafe(32))
        key = self.prefix + session.session_id
        self.client.hset(key, mapping={"reviewer": reviewer, "csrf": session.csrf})
        self.client.expire(key, self.ttl_s)
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 128:
            return None
        values = self.client.hmget(self.prefix + session_id, ["reviewer", "csrf"])
        if values[0] is None or values[1] is None:
            return None
        return Session(session_id, _text(values[0]), _text(values[1]))

    def end(self, session_id: str) -> None:
        self.client.delete(self.prefix + session_id, self.prefix + session_id + ":skipped")

    def skip(self, session: Session, frame_id: str) -> None:
        """Remember that this session skipped ``frame_id``: "next" will not offer it again."""
        key = self.prefix + session.session_id + ":skipped"
        self.client.sadd(key, frame_id)
        self.client.expire(key, self.ttl_s)

    def skipped(self, session: Session) -> set[str]:
        return {_text(v) for v in self.client.smembers(self.prefix + session.session_id + ":skipped")}


def csrf_ok(session: Session, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(session.csrf.encode(), (presented or "").encode())


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
