"""Key checks shared by request authentication and the verification endpoint, in the documented
order: NOT_FOUND, REVOKED, SUSPENDED, EXPIRED, FORBIDDEN, INSUFFICIENT_SCOPES, RATE_LIMITED,
QUOTA_EXCEEDED, BUDGET_EXCEEDED, VALID. Key records come from the per-worker cache (key_cache).
"""
import enum
from dataclasses import dataclass
from datetime import datetime

from redis.exceptions import RedisError

from app.models.api_key import EXPIRED, REVOKED, SUSPENDED
from app.models.types import utcnow
from app.services import allowances, usage
from app.services import scopes as scope_rules
from app.services.admission import Admission, Allowance, Bucket
from app.services.key_cache import KeyRecord, key_cache


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


def check_key(secret: str, client_ip: str | None, now: datetime | None = None):
    """Run the checks up to the address allowlist; return (Outcome, KeyRecord or None).

    The outcome is VALID when every one of those checks passed.
    """
    record = key_cache().find(secret)
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


def verify(secret: str, scopes=(), client_ip=None, cost: int = 1, now: datetime | None = None) -> Verdict:
    """Check a key in the documented order, at `now`; the first failure wins. Counts nothing itself."""
    now = now or utcnow()
    outcome, record = check_key(secret, client_ip, now)
    if outcome is not Outcome.VALID:
        return Verdict(outcome, record)
    missing = tuple(scope for scope in scopes
                    if not scope_rules.key_allows(record.scopes, record.owner_is_admin, scope))
    if missing:
        return Verdict(Outcome.INSUFFICIENT_SCOPES, record, missing_scopes=missing)
    try:
        admission = allowances.admit_key(record, cost, now)
    except RedisError:
        allowances.tolerate_storage_error("rate limit, quota and budget checks")
        return Verdict(Outcome.VALID, record)
    return _verdict(record, admission, now)


def count(verdict: Verdict, cost: int, now: datetime, model: str = ""):
    """Count a verdict in the checked key's usage: its outcome, the cost when admitted (under
    `model`, an LLM gateway call's), and the key's last use."""
    if verdict.record is None:
        return
    buffer = usage.buffer()
    admitted = verdict.outcome is Outcome.VALID
    buffer.count(verdict.record.id, verdict.outcome.value, cost if admitted else 0, now, model)
    if admitted:
        buffer.key_used(verdict.record.id, now)


def _verdict(record: KeyRecord, admission: Admission, now: datetime) -> Verdict:
    """The verdict of an admission: the tightest rate-limit window, and the quota and budget (checked
    only when every bucket admitted the request)."""
    verdict = Verdict(Outcome.VALID, record)
    for limit, count in admission.used:
        if isinstance(limit, Bucket):
            remaining = max(limit.limit - count, 0)
            if verdict.rate_limit is None or remaining < verdict.rate_limit["remaining"]:
                verdict.rate_limit = {"limit": limit.limit, "remaining": remaining, "window": limit.window}
        else:
            setattr(verdict, limit.kind, limit.state(count, now))
    refused = admission.refused
    if isinstance(refused, Bucket):
        verdict.outcome = Outcome.RATE_LIMITED
    elif isinstance(refused, Allowance):
        verdict.outcome = Outcome.QUOTA_EXCEEDED if refused.kind == "quota" else Outcome.BUDGET_EXCEEDED
    return verdict
