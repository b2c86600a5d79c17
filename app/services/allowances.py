"""Quotas (requests) and budgets (cost units) per key, per UTC day, UTC month or in total.

Counters live in the rate limiter's storage: on Redis (redis_counters) one Lua script counts the
key's rate limits (in flask-limiter's own fixed-window buckets), then checks every allowance and
adds to all of them or to none, and workers lease shares of counters far from their limits;
concurrent workers can never admit more than a limit in total. On memory:// they hold for one
process, like the limits themselves. Every Redis call here goes through the storage's circuit
breaker (app/services/breaker.py): while Redis hangs or is down they fail at once with a RedisError.
"""
import functools
import logging
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from flask import current_app
from redis.exceptions import RedisError

from app.extensions import limiter
from app.services import breaker
from app.services.redis_counters import RedisCounters

PERIODS = ("day", "month", "total")
log = logging.getLogger(__name__)


def tolerate_storage_error(what: str):
    """Call in an `except RedisError` block: RATELIMIT_ON_STORAGE_ERROR=open logs a warning and lets
    the request through; `closed` re-raises, and the error handler answers 503 LIMITS_UNAVAILABLE.

    While Redis is down or hung every call fails (at once with BreakerOpen while the storage's
    breaker is open, app/services/breaker.py): the warning is logged once per REDIS_RETRY_SECONDS
    and per process, not once per request."""
    if current_app.config["RATELIMIT_ON_STORAGE_ERROR"] != "open":
        raise
    guard = breaker.breaker_of(limiter.storage)
    if guard is None or guard.report_once():
        log.warning("%s skipped: rate limit storage unreachable (fail open)", what)
    else:
        log.debug("%s skipped: rate limit storage unreachable (fail open)", what)


def period_window(period: str, now: datetime):
    """Return (window id, reset time or None) of the UTC calendar window that holds `now`."""
    return _window(period, now.date())


@functools.lru_cache(maxsize=64)
def _window(period: str, day: date):
    if period == "day":
        start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        return start.strftime("%Y%m%d"), start + timedelta(days=1)
    if period == "month":
        start = datetime(day.year, day.month, 1, tzinfo=timezone.utc)
        following = (start + timedelta(days=32)).replace(day=1)
        return start.strftime("%Y%m"), following
    return "total", None


@dataclass(frozen=True)
class Allowance:
    kind: str  # "quota" or "budget"
    key_id: int
    limit: int
    period: str

    def counter(self, now):
        window, reset_at = period_window(self.period, now)
        namespace = current_app.config.get("RATELIMIT_KEY_PREFIX", "")
        return f"{namespace}latchkey:{self.kind}:{self.key_id}:{window}", reset_at


class _MemoryCounters:
    def __init__(self):
        self._lock = threading.Lock()
        self._values = {}  # name -> (value, expires at epoch or None)

    def _live(self, name):
        value, expires = self._values.get(name, (0, None))
        if expires is not None and expires <= time.time():
            self._values.pop(name, None)
            return 0
        return value

    def admit(self, buckets, counters):
        counts = []
        for index, (name, limit, window) in enumerate(buckets, 1):  # flask-limiter's own buckets
            counts.append(limiter.storage.incr(name, window))
            if counts[-1] > limit:
                return index, counts
        with self._lock:
            current = [self._live(name) for name, _, _, _ in counters]
            for index, ((name, amount, limit, _), value) in enumerate(zip(counters, current), len(buckets) + 1):
                if value + amount > limit:
                    return index, counts + current
            for (name, amount, _, expires_at), value in zip(counters, current):
                self._values[name] = (value + amount, expires_at or None)
            return 0, counts + [value + amount for (_, amount, _, _), value in zip(counters, current)]

    def get(self, name):
        with self._lock:
            return self._live(name)

    def clear(self, name):
        with self._lock:
            self._values.pop(name, None)


_memory = _MemoryCounters()


def _counters():
    storage = limiter.storage
    if hasattr(storage, "get_connection"):  # the Redis, Sentinel and Cluster storages
        cached = getattr(storage, "_latchkey_counters", None)
        if cached is None:
            cached = RedisCounters(storage)
            storage._latchkey_counters = cached
        return cached
    return _memory


def admit(buckets, allowances, now: datetime):
    """Count one hit on each rate-limit bucket, then add to every allowance or to none.

    `buckets` are (flask-limiter bucket name, limit, window seconds), counted first and stopping at
    the first one over its limit; `allowances` are (Allowance, amount). Returns (index of the first
    refusal, 1-based over buckets then allowances, or 0; counts after the call; reset times).
    """
    counters, resets = [], []
    for allowance, amount in allowances:
        name, reset_at = allowance.counter(now)
        # Counters outlive their window by a day, so "used" stays readable around the boundary.
        expires_at = (reset_at + timedelta(days=1)).timestamp() if reset_at else None
        counters.append((name, amount, allowance.limit, expires_at))
        resets.append(reset_at)
    if not buckets and not counters:
        return 0, [], resets  # a key without limits costs no round trip
    refused, counts = _counters().admit(buckets, counters)
    return refused, counts, resets


def used(allowance: Allowance, now: datetime) -> int:
    return _counters().get(allowance.counter(now)[0])


def reset(allowance: Allowance, now: datetime):
    """Start the current window over (an admin's reset)."""
    _counters().clear(allowance.counter(now)[0])


def allowances_of(record) -> list:
    """Return the quota and budget Allowances a key (model or KeyRecord) carries."""
    found = []
    for kind in ("quota", "budget"):
        limit = getattr(record, f"{kind}_limit")
        if limit is not None:
            found.append(Allowance(kind, record.id, limit, getattr(record, f"{kind}_period")))
    return found


def allowance_state(key, kind: str):
    """Return the JSON shape of a key's quota or budget with what remains, or None if unset."""
    limit = getattr(key, f"{kind}_limit")
    if limit is None:
        return None
    period = getattr(key, f"{kind}_period")
    now = datetime.now(timezone.utc)
    try:
        spent = used(Allowance(kind, key.id, limit, period), now)
    except RedisError:  # storage unreachable (or its breaker open): say so rather than fail the document
        spent = None
    reset_at = period_window(period, now)[1]
    return {
        "limit": limit, "period": period, "used": spent,
        "remaining": None if spent is None else max(limit - spent, 0),
        "resets-at": reset_at.isoformat() if reset_at else None,
    }
