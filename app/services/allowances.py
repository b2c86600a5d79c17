"""Quotas (requests) and budgets (cost units) per key, per UTC day, UTC month or in total.

Counters live in the rate limiter's storage: on Redis one Lua script counts the key's rate
limits (in flask-limiter's own fixed-window buckets), then checks every allowance and adds to all
of them or to none, in one round trip; concurrent workers can never admit more than a limit in
total. On memory:// they hold for one process, like the limits themselves.
"""
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from flask import current_app

from app.extensions import limiter

PERIODS = ("day", "month", "total")
log = logging.getLogger(__name__)

# KEYS: rate-limit buckets, then allowance counters. ARGV[1]: how many buckets; then per bucket
# its limit and window in seconds; then per allowance its amount, limit and expiry (0: never).
# Returns {index of the first refusal (0: admitted), count of every key after the call}.
_ADMIT = """
local buckets = tonumber(ARGV[1])
local counts, arg = {}, 2
for i = 1, buckets do
  local current = redis.call('incrby', KEYS[i], 1)
  if current == 1 then redis.call('expire', KEYS[i], ARGV[arg + 1]) end
  counts[i] = current
  if current > tonumber(ARGV[arg]) then return {i, unpack(counts)} end
  arg = arg + 2
end
local refused = 0
for i = buckets + 1, #KEYS do
  local current = tonumber(redis.call('get', KEYS[i]) or '0')
  counts[i] = current
  local a = arg + (i - buckets - 1) * 3
  if refused == 0 and current + tonumber(ARGV[a]) > tonumber(ARGV[a + 1]) then refused = i end
end
if refused > 0 then return {refused, unpack(counts)} end
for i = buckets + 1, #KEYS do
  local a = arg + (i - buckets - 1) * 3
  counts[i] = redis.call('incrby', KEYS[i], ARGV[a])
  if ARGV[a + 2] ~= '0' then redis.call('expireat', KEYS[i], ARGV[a + 2]) end
end
return {0, unpack(counts)}
"""


def tolerate_storage_error(what: str):
    """Call in an `except RedisError` block: RATELIMIT_ON_STORAGE_ERROR=open logs a warning and lets
    the request through; `closed` re-raises, and the error handler answers 503 LIMITS_UNAVAILABLE."""
    if current_app.config["RATELIMIT_ON_STORAGE_ERROR"] != "open":
        raise
    log.warning("%s skipped: rate limit storage unreachable (fail open)", what)


def period_window(period: str, now: datetime):
    """Return (window id, reset time or None) of the UTC calendar window that holds `now`."""
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start.strftime("%Y%m%d"), start + timedelta(days=1)
    if period == "month":
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
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


class _RedisCounters:
    def __init__(self, storage):
        self._storage = storage
        self._connection = storage.get_connection()
        self._script = self._connection.register_script(_ADMIT)

    def admit(self, buckets, counters):
        keys = [self._storage.prefixed_key(name) for name, _, _ in buckets] + [name for name, _, _, _ in counters]
        args = [len(buckets)]
        for _, limit, window in buckets:
            args += [limit, window]
        for _, amount, limit, expires_at in counters:
            args += [amount, limit, int(expires_at or 0)]
        refused, *counts = self._script(keys=keys, args=args)
        return int(refused), [int(count) for count in counts]

    def get(self, name):
        return int(self._connection.get(name) or 0)

    def clear(self, name):
        self._connection.delete(name)


_memory = _MemoryCounters()


def _counters():
    storage = limiter.storage
    if hasattr(storage, "get_connection"):  # the Redis, Sentinel and Cluster storages
        cached = getattr(storage, "_latchkey_counters", None)
        if cached is None:
            cached = _RedisCounters(storage)
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
    except Exception:  # storage unreachable: say so rather than fail the whole document
        spent = None
    reset_at = period_window(period, now)[1]
    return {
        "limit": limit, "period": period, "used": spent,
        "remaining": None if spent is None else max(limit - spent, 0),
        "resets-at": reset_at.isoformat() if reset_at else None,
    }
