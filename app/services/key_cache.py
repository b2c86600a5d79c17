"""Cached key records: what the hot path needs to know about a key, without a database read.

Records are cached per worker until something changes (see KeyCache), so a revoke, suspend,
rotate, scope change or delete reaches every worker within KEY_CACHE_SECONDS (1 s by default),
and at once on the worker that made it.
"""
import ipaddress
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select

from app.extensions import db, state
from app.models import ApiKey, KeyChange, User
from app.models.api_key import status_at
from app.services import clock
from app.services.key_format import hash_secret, is_well_formed

CACHE_MAX_ENTRIES = 50_000
MAX_CHANGES_APPLIED = 1_000  # more changes at once than this: drop the whole cache instead


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
        return status_at(self.status, self.expires_at, now)

    def allows_address(self, address: str | None) -> bool:
        if not self.networks:
            return True
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        return any(ip in network for network in self.networks)


class KeyCache:
    """digest -> KeyRecord, per worker process, kept until the key or its account changes.

    Every change that matters to a key (a key's or an account's mutation, from the API or the CLI,
    on any host) is written to the key change log in its own transaction, numbered in commit order
    (app/models/change.py). At most once per `ttl` seconds the cache reads the log past the last
    change it saw (an index range scan, usually empty) and drops the records of the keys and
    accounts named there; everything, if it fell behind the log. A change committed at T is thus
    refused by every worker by T + ttl, whatever order the transactions committed in; other audit
    events (logins, failed logins) touch nothing.

    Digests of well-formed keys that are not in the database are remembered for `ttl` too, so a
    caller repeating an unknown key costs no lookup; a key created afterwards works at once on the
    worker that created it (refresh_key_cache) and within `ttl` elsewhere.
    """

    def __init__(self, prefix: str, ttl: float):
        self.prefix = prefix  # API_KEY_PREFIX: a secret without it is no key
        self.ttl = ttl  # KEY_CACHE_SECONDS
        self._entries: dict[str, KeyRecord] = {}
        self._unknown: dict[str, float] = {}  # digest -> monotonic time it was found missing
        self._seq: int | None = None  # the last change log entry applied
        self._checked_at = float("-inf")

    def find(self, secret: str):
        """Return the record of the key `secret`, or None. A malformed key or a bad checksum is
        refused before any database lookup; a cached digest is always a well-formed key's."""
        ttl = self.ttl
        now = clock.monotonic()
        if now - self._checked_at >= ttl:
            self.catch_up()
            self._checked_at = now
        if not secret.isascii():  # no key has other characters (and a lone surrogate cannot be hashed)
            return None
        digest = hash_secret(secret)
        record = self._entries.get(digest)
        if record is None and is_well_formed(secret, self.prefix):
            missed_at = self._unknown.get(digest)
            if missed_at is not None and now - missed_at < ttl:
                return None
            record = _load(digest)
            if record is not None:
                _remember(self._entries, digest, record)
            else:
                _remember(self._unknown, digest, now)
        return record

    def catch_up(self):
        """Apply the change log entries committed since the last call."""
        if self._seq is None:  # nothing cached yet: start from the newest entry
            self._seq = db.session.scalar(select(func.max(KeyChange.seq))) or 0
            return
        rows = db.session.execute(
            select(KeyChange.seq, KeyChange.key_id, KeyChange.user_id)
            .where(KeyChange.seq > self._seq).order_by(KeyChange.seq).limit(MAX_CHANGES_APPLIED + 1)).all()
        if not rows:
            return
        if rows[0].seq != self._seq + 1 or len(rows) > MAX_CHANGES_APPLIED:  # behind the log: start over
            self._entries.clear()
            self._seq = db.session.scalar(select(func.max(KeyChange.seq))) or 0
            return
        keys = {row.key_id for row in rows if row.key_id is not None}
        users = {row.user_id for row in rows if row.user_id is not None}
        for digest, record in list(self._entries.items()):
            if record.id in keys or record.user_id in users:
                del self._entries[digest]
        self._seq = rows[-1].seq

    def forget_unknown(self):
        self._unknown.clear()


def _remember(cache: dict, digest: str, value):
    if len(cache) >= CACHE_MAX_ENTRIES:
        cache.clear()
    cache[digest] = value


def _load(digest: str):
    row = db.session.execute(
        select(ApiKey, User.is_admin).join(User, User.id == ApiKey.user_id)
        .where(or_(ApiKey.digest == digest, ApiKey.previous_digest == digest))
    ).first()
    if row is None:
        return None
    key, owner_is_admin = row
    return KeyRecord.from_row(key, owner_is_admin, matched_previous=key.digest != digest)


def init_app(app):
    app.extensions["latchkey_key_cache"] = KeyCache(app.config["API_KEY_PREFIX"], app.config["KEY_CACHE_SECONDS"])


def key_cache() -> KeyCache:
    return state("latchkey_key_cache")


def refresh_key_cache():
    """After a change committed here: apply it to this worker's cache at once (not within the
    cache time), and forget unknown digests, which a new key may now have."""
    cache = key_cache()
    cache.catch_up()
    cache.forget_unknown()
