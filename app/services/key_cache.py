"""Cached key records: what the hot path needs to know about a key, without a database read.

Records are cached per worker until something changes (see KeyCache), so a revoke, suspend,
rotate, scope change or delete reaches every worker within KEY_CACHE_SECONDS (1 s by default),
and at once on the worker that made it.
"""
import ipaddress
import time
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import func, or_, select

from app.extensions import db
from app.models import ApiKey, AuditEvent, User
from app.models.api_key import EXPIRED
from app.services.key_format import hash_secret, is_well_formed

CACHE_MAX_ENTRIES = 50_000


@dataclass(frozen=True)
class KeyRecord:
    """What the hot path needs to know about a key: no digest, no secret."""

    id: int
    user_id: int
    owner_is_admin: bool
    name: str
    scopes: tuple
    status: str
    expires_at: datetime | None
    allowed_ips: tuple
    networks: tuple
    metadata: dict
    rate_limit: str | None
    quota_limit: int | None
    quota_period: str | None
    budget_limit: int | None
    budget_period: str | None
    grace_until: datetime | None  # set when the secret is the one replaced by a rotation

    @classmethod
    def from_row(cls, key: ApiKey, owner_is_admin: bool, matched_previous: bool):
        return cls(
            id=key.id, user_id=key.user_id, owner_is_admin=owner_is_admin, name=key.name,
            scopes=tuple(key.scopes or ()), status=key.status, expires_at=key.expires_at,
            allowed_ips=tuple(key.allowed_ips or ()),
            networks=tuple(ipaddress.ip_network(cidr, strict=False) for cidr in key.allowed_ips or ()),
            metadata=dict(key.key_metadata or {}), rate_limit=key.rate_limit,
            quota_limit=key.quota_limit, quota_period=key.quota_period,
            budget_limit=key.budget_limit, budget_period=key.budget_period,
            grace_until=key.previous_valid_until if matched_previous else None,
        )

    def status_at(self, now: datetime) -> str:
        if self.status == "active" and self.expires_at is not None and self.expires_at <= now:
            return EXPIRED
        return self.status

    def allows_address(self, address: str | None) -> bool:
        if not self.networks:
            return True
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        return any(ip in network for network in self.networks)


class KeyCache:
    """digest -> KeyRecord, per worker process, kept until any change is recorded anywhere.

    Every change that matters to a key (key or account mutations, from the API or the CLI, on any
    host) writes an audit event in its own transaction. At most once per `ttl` seconds the cache
    reads the newest audit event id (a primary-key lookup) and drops everything when it moved.
    """

    def __init__(self):
        self._entries = {}
        self._marker = None
        self._checked_at = float("-inf")

    def find(self, secret: str, prefix: str, ttl: float):
        """Return the record of the key `secret`, or None. A malformed key or a bad checksum is
        refused before any database lookup; a cached digest is always a well-formed key's."""
        now = time.monotonic()
        if now - self._checked_at >= ttl:
            marker = db.session.scalar(select(func.max(AuditEvent.id)))
            if marker != self._marker:
                self._entries.clear()
                self._marker = marker
            self._checked_at = now
        digest = hash_secret(secret)
        record = self._entries.get(digest)
        if record is None and is_well_formed(secret, prefix):
            record = _load(digest)  # unknown digests are not cached: a new key works at once
            if record is not None:
                if len(self._entries) >= CACHE_MAX_ENTRIES:
                    self._entries.clear()
                self._entries[digest] = record
        return record

    def clear(self):
        self._entries.clear()


def _load(digest: str):
    row = db.session.execute(
        select(ApiKey, User.is_admin).join(User, User.id == ApiKey.user_id)
        .where(or_(ApiKey.digest == digest, ApiKey.previous_digest == digest))
    ).first()
    if row is None:
        return None
    key, owner_is_admin = row
    return KeyRecord.from_row(key, owner_is_admin, matched_previous=key.digest != digest)


def key_cache() -> KeyCache:
    return current_app.extensions.setdefault("latchkey_key_cache", KeyCache())


def forget_cached_keys():
    """Drop this worker's cached key records (after a change made here)."""
    key_cache().clear()
