"""Key checks shared by request authentication and the verification endpoint.

Key records are cached per worker and re-validated every KEY_CACHE_SECONDS (1 s by default; see
KeyCache), so a revoke, suspend, rotate, scope change or delete reaches every worker within that
time without a database read per request. A change made by this worker clears its cache at once.
"""
import enum
import ipaddress
import logging
import time
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from limits import parse_many
from redis.exceptions import RedisError
from sqlalchemy import func, or_, select

from app.extensions import KEY_RATE_SCOPE, db
from app.models import ApiKey, AuditEvent, User
from app.models.api_key import EXPIRED, REVOKED, SUSPENDED
from app.models.types import utcnow
from app.services import allowances
from app.services import scopes as scope_rules
from app.services.key_format import hash_secret, is_well_formed

log = logging.getLogger(__name__)

CACHE_MAX_ENTRIES = 50_000


class Outcome(str, enum.Enum):
    """Verification answers, in the order the checks run; the first failure wins."""

    NOT_FOUND = "NOT_FOUND"
    REVOKED = "REVOKED"
    SUSPENDED = "SUSPENDED"
    EXPIRED = "EXPIRED"
    FORBIDDEN = "FORBIDDEN"
    INSUFFICIENT_SCOPES = "INSUFFICIENT_SCOPES"
    RATE_LIMITED = "RATE_LIMITED"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"
    VALID = "VALID"


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

    def get(self, digest: str, ttl: float):
        now = time.monotonic()
        if now - self._checked_at >= ttl:
            marker = db.session.scalar(select(func.max(AuditEvent.id)))
            if marker != self._marker:
                self._entries.clear()
                self._marker = marker
            self._checked_at = now
        record = self._entries.get(digest)
        if record is None:
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


def check_key(secret: str, client_ip: str | None, now: datetime | None = None):
    """Run the checks up to the address allowlist; return (Outcome, KeyRecord or None).

    The outcome is VALID when every one of those checks passed.
    """
    if not is_well_formed(secret, current_app.config["API_KEY_PREFIX"]):
        return Outcome.NOT_FOUND, None
    record = key_cache().get(hash_secret(secret), current_app.config["KEY_CACHE_SECONDS"])
    now = now or utcnow()
    if record is None or (record.grace_until is not None and record.grace_until <= now):
        return Outcome.NOT_FOUND, None
    status = record.status_at(now)
    if status == REVOKED:
        return Outcome.REVOKED, record
    if status == SUSPENDED:
        return Outcome.SUSPENDED, record
    if status == EXPIRED:
        return Outcome.EXPIRED, record
    if not record.allows_address(client_ip):
        return Outcome.FORBIDDEN, record
    return Outcome.VALID, record


@dataclass
class Verdict:
    """The answer to "may this key do this, from there, at this cost?"."""

    outcome: Outcome
    record: KeyRecord | None = None
    missing_scopes: tuple = ()
    rate_limit: dict | None = None
    quota: dict | None = None
    budget: dict | None = None


def _storage_error(what):
    if current_app.config["RATELIMIT_ON_STORAGE_ERROR"] != "open":
        raise
    log.warning("%s skipped: rate limit storage unreachable (fail open)", what)


def _rate_buckets(record: KeyRecord):
    """Return the key's own limits as (flask-limiter bucket, limit, window): the buckets its API
    requests are counted in (fixed window), so requests and verifications share them."""
    if not record.rate_limit:
        return []
    prefix = current_app.config.get("RATELIMIT_KEY_PREFIX", "")
    args = ([prefix] if prefix else []) + [f"key:{record.id}", KEY_RATE_SCOPE]
    return [(item.key_for(*args), item.amount, item.get_expiry()) for item in parse_many(record.rate_limit)]


def _allowance_state(allowance, used, reset_at):
    return {"limit": allowance.limit, "period": allowance.period, "remaining": max(allowance.limit - used, 0),
            "resets-at": reset_at.isoformat() if reset_at else None}


def verify(secret: str, scopes=(), client_ip=None, cost: int = 1) -> Verdict:
    """Check a key in the documented order; the first failure wins. Counts nothing itself."""
    now = utcnow()
    outcome, record = check_key(secret, client_ip, now)
    if outcome is not Outcome.VALID:
        return Verdict(outcome, record)
    missing = tuple(scope for scope in scopes if not scope_rules.allows(record.scopes, scope))
    if missing:
        return Verdict(Outcome.INSUFFICIENT_SCOPES, record, missing_scopes=missing)
    verdict = Verdict(Outcome.VALID, record)
    buckets = _rate_buckets(record)
    wanted = [(a, 1 if a.kind == "quota" else cost) for a in allowances.allowances_of(record)]
    try:
        refused, counts, resets = allowances.admit(buckets, wanted, now)
    except RedisError:
        _storage_error("rate limit, quota and budget checks")
        return verdict
    for (_, limit, window), count in zip(buckets, counts):
        state = {"limit": limit, "remaining": max(limit - count, 0), "window": window}
        if verdict.rate_limit is None or state["remaining"] < verdict.rate_limit["remaining"]:
            verdict.rate_limit = state
    if 0 < refused <= len(buckets):
        verdict.outcome = Outcome.RATE_LIMITED
        return verdict
    for (allowance, _), used, reset_at in zip(wanted, counts[len(buckets):], resets):
        setattr(verdict, allowance.kind, _allowance_state(allowance, used, reset_at))
    if refused:
        allowance = wanted[refused - len(buckets) - 1][0]
        verdict.outcome = Outcome.QUOTA_EXCEEDED if allowance.kind == "quota" else Outcome.BUDGET_EXCEEDED
    return verdict
