"""Quotas (requests) and budgets (cost units) per key, per UTC day, UTC month or in total.

Counters live in the rate limiter's storage: on Redis a Lua script checks and adds in one step,
so concurrent workers can never admit more than the limit in total; on memory:// they hold
for one process, like the limits themselves.
"""
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from flask import current_app

from app.extensions import limiter

PERIODS = ("day", "month", "total")

_CHECK_AND_ADD = """
local current = tonumber(redis.call('get', KEYS[1]) or '0')
local amount = tonumber(ARGV[1])
if current + amount > tonumber(ARGV[2]) then
  return {0, current}
end
current = redis.call('incrby', KEYS[1], amount)
if ARGV[3] ~= '0' then
  redis.call('expireat', KEYS[1], ARGV[3])
end
return {1, current}
"""


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

    def check_and_add(self, name, amount, limit, expires_at):
        with self._lock:
            current = self._live(name)
            if current + amount > limit:
                return False, current
            self._values[name] = (current + amount, expires_at or None)
            return True, current + amount

    def add(self, name, amount):
        with self._lock:
            value, expires = self._values.get(name, (0, None))
            self._values[name] = (max(self._live(name) + amount, 0), expires)

    def get(self, name):
        with self._lock:
            return self._live(name)

    def clear(self, name):
        with self._lock:
            self._values.pop(name, None)


class _RedisCounters:
    def __init__(self, connection):
        self._connection = connection
        self._script = connection.register_script(_CHECK_AND_ADD)

    def check_and_add(self, name, amount, limit, expires_at):
        admitted, current = self._script(keys=[name], args=[amount, limit, int(expires_at or 0)])
        return bool(admitted), int(current)

    def add(self, name, amount):
        self._connection.incrby(name, amount)

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
            cached = _RedisCounters(storage.get_connection())
            storage._latchkey_counters = cached
        return cached
    return _memory


def consume(allowance: Allowance, amount: int, now: datetime):
    """Add `amount` if it fits; return (admitted, used after the call, reset time or None)."""
    name, reset_at = allowance.counter(now)
    # Counters outlive their window by a day, so "used" stays readable around the boundary.
    expires_at = (reset_at + timedelta(days=1)).timestamp() if reset_at else None
    admitted, used = _counters().check_and_add(name, amount, allowance.limit, expires_at)
    return admitted, used, reset_at


def refund(allowance: Allowance, amount: int, now: datetime):
    """Give back what `consume` took for a request that was refused later on."""
    _counters().add(allowance.counter(now)[0], -amount)


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
