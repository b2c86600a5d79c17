"""`Verification`: Latchkey's answer about one key, typed and frozen."""
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

VALID = "VALID"
UNVERIFIED = "UNVERIFIED"  # fail="open" let the request through without asking Latchkey
# Every code Latchkey answers, in the order it checks them (the first failure wins).
CODES = ("NOT_FOUND", "REVOKED", "SUSPENDED", "EXPIRED", "FORBIDDEN", "INSUFFICIENT_SCOPES", "RATE_LIMITED",
         "QUOTA_EXCEEDED", "BUDGET_EXCEEDED", VALID)

# Where an answer came from.
FROM_LATCHKEY = "latchkey"   # asked just now
FROM_CACHE = "cache"         # a fresh cached answer (a signed one re-checked on this use)
FROM_STALE_CACHE = "stale-cache"  # fail="cached": Latchkey unreachable, a cached answer not yet expired
FROM_FAIL_OPEN = "fail-open"  # fail="open": Latchkey unreachable, nothing was checked
FROM_TOKEN = "token"         # Latchkey.check_token: a signed answer checked offline


@dataclass(frozen=True, slots=True)
class Verification:
    """Whether a key may do what was asked, and what Latchkey said about it.

    `valid` and `code` are always set; the key's fields only on a valid answer
    (`rotation_grace_until` only when the secret checked is one a rotation replaced: it stops
    working then); the remaining allowances when the key has such limits; `retry_after` (seconds)
    on RATE_LIMITED (the window's length: an upper bound) and on QUOTA_EXCEEDED / BUDGET_EXCEEDED
    of a day or month (until the reset). `source` says where the answer came from (FROM_* above);
    `unverified` is True only for a request let through by fail="open"."""

    valid: bool
    code: str
    key_id: str | None = None
    owner_id: str | None = None
    name: str | None = None
    scopes: tuple[str, ...] = ()
    missing_scopes: tuple[str, ...] = ()
    expires_at: datetime | None = None
    rotation_grace_until: datetime | None = None
    rate_limit_remaining: int | None = None
    quota_remaining: int | None = None
    budget_remaining: int | None = None
    retry_after: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False, compare=False)
    source: str = FROM_LATCHKEY
    token: str | None = field(default=None, repr=False, compare=False)

    @property
    def unverified(self) -> bool:
        return self.source == FROM_FAIL_OPEN

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], now: datetime | None = None) -> "Verification":
        """Return the Verification of a `POST /v1/api-keys/verify` answer's `meta`."""
        key = meta.get("key") or {}
        rate_limit, quota, budget = meta.get("rate-limit"), meta.get("quota"), meta.get("budget")
        code = str(meta.get("code", ""))
        return cls(
            valid=meta.get("valid") is True and code == VALID,
            code=code,
            key_id=_text(key.get("id")),
            owner_id=_text(key.get("owner-id")),
            name=key.get("name"),
            scopes=tuple(key.get("scopes") or ()),
            missing_scopes=tuple(meta.get("missing-scopes") or ()),
            expires_at=_instant(key.get("expires-at")),
            rotation_grace_until=_instant(key.get("rotation-grace-until")),
            rate_limit_remaining=_remaining(rate_limit),
            quota_remaining=_remaining(quota),
            budget_remaining=_remaining(budget),
            retry_after=_retry_after(code, rate_limit, quota, budget, now),
            metadata=MappingProxyType(dict(key.get("metadata") or {})),
            token=meta.get("token") if isinstance(meta.get("token"), str) else None,
        )


def _text(value) -> str | None:
    return None if value is None else str(value)


def _instant(value) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _remaining(allowance) -> int | None:
    value = allowance.get("remaining") if isinstance(allowance, Mapping) else None
    return value if isinstance(value, int) else None


def _retry_after(code, rate_limit, quota, budget, now) -> int | None:
    """Seconds until a refused key may be served again, when the answer tells: a rate limit's window
    length (fixed windows: the reset is at most that far), a quota's or budget's reset time."""
    if code == "RATE_LIMITED" and isinstance(rate_limit, Mapping) and isinstance(rate_limit.get("window"), int):
        return max(1, rate_limit["window"])
    allowance = quota if code == "QUOTA_EXCEEDED" else budget if code == "BUDGET_EXCEEDED" else None
    reset = _instant(allowance.get("resets-at")) if isinstance(allowance, Mapping) else None
    if reset is None:
        return None
    seconds = (reset - (now or datetime.now(UTC))).total_seconds()
    return max(1, math.ceil(seconds))
