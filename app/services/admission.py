"""What counting a request against a key's own limits takes and gives, for both counter backends
(allowances.MemoryCounters, redis_counters.RedisCounters): the limits (a rate-limit Bucket, a
quota or budget Allowance), the Charges made to their counters, and the Admission that answers."""
import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from limits import parse_many

PERIODS = ("day", "month", "total")


def period_window(period: str, now: datetime):
    """Return (window id, reset time or None) of the UTC calendar window that holds `now`."""
    return _window(period, now.date())


@functools.lru_cache(maxsize=64)
def _window(period: str, day: date):
    if period == "day":
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return start.strftime("%Y%m%d"), start + timedelta(days=1)
    if period == "month":
        start = datetime(day.year, day.month, 1, tzinfo=UTC)
        following = (start + timedelta(days=32)).replace(day=1)
        return start.strftime("%Y%m"), following
    return "total", None


@dataclass(frozen=True)
class Allowance:
    """A key's quota (requests) or budget (cost units) over a UTC day, a UTC month or in total."""

    kind: str  # "quota" or "budget"
    key_id: int
    limit: int
    period: str

    def charge(self, amount: int, now: datetime, namespace: str) -> "Charge":
        """The Charge of `amount` to its counter (under `namespace`) for the window that holds `now`."""
        return _charge(self, amount, now.date(), namespace)

    def state(self, used: int | None, now: datetime) -> dict:
        """The allowance as documents show it: its limit, what is used and what remains (None when
        unknown), and when its window resets."""
        return {"limit": self.limit, "period": self.period, "used": used,
                "remaining": None if used is None else max(self.limit - used, 0),
                "resets-at": _reset_text(self.period, now.date())}


@dataclass(frozen=True)
class Bucket:
    """One of a key's own rate limits, as flask-limiter counts it: a fixed-window bucket."""

    name: str  # flask-limiter's bucket name (key_buckets)
    limit: int
    window: int  # seconds

    def charge(self) -> "Charge":
        """The Charge of one request to the bucket."""
        return _bucket_charge(self)


@dataclass(frozen=True)
class Charge:
    """One counter to add to: the limit it enforces, its name in the storage, the amount, and its
    expiry (a bucket's window in seconds; an allowance's end as epoch seconds, 0 for none)."""

    limit: Bucket | Allowance
    name: str
    amount: int
    expiry: float


# The hot path charges the same counters again and again: their Charges are made once per window.
@functools.lru_cache(maxsize=4096)
def _charge(allowance: Allowance, amount: int, day: date, namespace: str) -> Charge:
    window, reset_at = _window(allowance.period, day)
    # Counters outlive their window by a day, so "used" stays readable around the boundary.
    expiry = (reset_at + timedelta(days=1)).timestamp() if reset_at else 0
    return Charge(allowance, f"{namespace}latchkey:{allowance.kind}:{allowance.key_id}:{window}", amount, expiry)


@functools.lru_cache(maxsize=4096)
def _bucket_charge(bucket: Bucket) -> Charge:
    return Charge(bucket, bucket.name, 1, bucket.window)


@functools.lru_cache(maxsize=64)
def _reset_text(period: str, day: date) -> str | None:
    reset_at = _window(period, day)[1]
    return reset_at.isoformat() if reset_at else None


@dataclass(frozen=True)
class Admission:
    """What `admit` did.

    `refused` is the first limit that refused, or None when the request was admitted (and added to
    every counter). `used` holds, for each limit checked, in the order given (the buckets are
    checked one by one and stop at the first over its limit; the allowances all together), its
    count after the call as this worker sees it. `leased` is how many units this worker leased in
    the call (Redis only: redis_counters)."""

    refused: Bucket | Allowance | None
    used: tuple = ()  # ((limit, count), ...)
    leased: int = 0

    @property
    def admitted(self) -> bool:
        return self.refused is None


# flask-limiter counts limits in fixed windows (set explicitly: app/api/helpers/ratelimit.py), the
# only strategy whose buckets the Lua admission (redis_counters) and MemoryCounters count the same way.
STRATEGY = "fixed-window"
KEY_RATE_SCOPE = "key-rate"  # the scope of a key's own rate limit, on every endpoint and in /verify


def key_identity(key_id: int) -> str:
    """The limiter identity of requests made with a key (ratelimit.rate_limit_identity)."""
    return f"key:{key_id}"


@functools.lru_cache(maxsize=4096)
def key_buckets(prefix: str, key_id: int, rate_limit: str) -> tuple:
    """Return the Buckets of a key's own rate limit: flask-limiter's names for the application limit
    (ratelimit.init_app) of a request made with the key, so API requests and verifications of the
    key count in the same windows. flask-limiter builds them as `limit.key_for(prefix, identity,
    scope)`; tests/test_verify.py checks the names against what flask-limiter reports."""
    args = ([prefix] if prefix else []) + [key_identity(key_id), KEY_RATE_SCOPE]
    return tuple(Bucket(item.key_for(*args), item.amount, item.get_expiry()) for item in parse_many(rate_limit))
