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
from datetime import UTC, datetime

from flask import current_app
from redis.exceptions import RedisError

from app.extensions import limiter, state
from app.services import breaker
from app.services.admission import Admission, Allowance, Bucket, key_buckets
from app.services.redis_counters import RedisCounters

log = logging.getLogger(__name__)


def tolerate_storage_error(what: str):
    """Call in an `except RedisError` block: RATELIMIT_ON_STORAGE_ERROR=open logs a warning and lets
    the request through; `closed` re-raises, and the error handler answers 503 LIMITS_UNAVAILABLE.

    While Redis is down or hung every call fails (at once with BreakerOpen while the storage's
    breaker is open, app/services/breaker.py): the warning is logged once per REDIS_RETRY_SECONDS
    and per process, not once per request."""
    if current_app.config["RATELIMIT_ON_STORAGE_ERROR"] != "open":
        raise
    _report_storage_error(f"{what} skipped (fail open)")


def _report_storage_error(what: str):
    guard = breaker.breaker_of(limiter.storage)
    level = logging.WARNING if guard is None or guard.report_once() else logging.DEBUG
    log.log(level, "%s: rate limit storage unreachable", what)


class MemoryCounters:
    """Counters of one process (memory://): the rate-limit buckets are flask-limiter's own, counted
    with the limiter storage's `incr`; allowances are added under a lock, all or none."""

    def __init__(self, storage, namespace: str = ""):
        self.namespace = namespace  # RATELIMIT_KEY_PREFIX, which allowance counters' names start with
        self._storage = storage
        self._lock = threading.Lock()
        self._values: dict[str, tuple] = {}  # name -> (value, expires at epoch or None)

    def _live(self, name):
        value, expires = self._values.get(name, (0, None))
        if expires is not None and expires <= time.time():
            self._values.pop(name, None)
            return 0
        return value

    def admit(self, charges) -> Admission:
        used = []
        for charge in (c for c in charges if isinstance(c.limit, Bucket)):
            used.append((charge.limit, self._storage.incr(charge.name, charge.expiry)))
            if used[-1][1] > charge.limit.limit:
                return Admission(charge.limit, tuple(used))
        with self._lock:
            current = [(c, self._live(c.name)) for c in charges if isinstance(c.limit, Allowance)]
            for charge, value in current:
                if value + charge.amount > charge.limit.limit:
                    return Admission(charge.limit, (*used, *((c.limit, value) for c, value in current)))
            for charge, value in current:
                self._values[charge.name] = (value + charge.amount, charge.expiry or None)
                used.append((charge.limit, value + charge.amount))
        return Admission(None, tuple(used))

    def get(self, name):
        with self._lock:
            return self._live(name)

    def clear(self, name):
        with self._lock:
            self._values.pop(name, None)

    def adjust(self, name, amount: int):
        """Add `amount` (negative: give back) to a live allowance counter, whatever its limit: a cost
        found to differ from what was admitted (reservations, the LLM gateway)."""
        with self._lock:
            value = self._live(name)
            if name in self._values:
                self._values[name] = (value + amount, self._values[name][1])


def init_app(app, storage):
    """Give the app the counters of its limiter storage: Redis (shared by every worker and host,
    with leases) or this process's memory. They live in app.extensions["latchkey_counters"]."""
    redis_backed = hasattr(storage, "get_connection")  # the Redis, Sentinel and Cluster storages
    counters = RedisCounters if redis_backed else MemoryCounters
    app.extensions["latchkey_counters"] = counters(storage, app.config["RATELIMIT_KEY_PREFIX"])


def _counters():
    return state("latchkey_counters")


def admit(buckets, allowances, now: datetime) -> Admission:
    """Count one hit on each rate-limit bucket, then add to every allowance or to none.

    `buckets` are Buckets, counted first, stopping at the first one over its limit; `allowances`
    are (Allowance, amount) pairs. Raises RedisError when the storage cannot be reached."""
    if not buckets and not allowances:
        return Admission(None)  # a key without limits costs no round trip
    counters = _counters()
    return counters.admit(_charges(buckets, allowances, now, counters.namespace))


def _charges(buckets, allowances, now: datetime, namespace: str) -> tuple:
    return tuple([bucket.charge() for bucket in buckets]
                 + [allowance.charge(amount, now, namespace) for allowance, amount in allowances])


def admit_key(record, cost: int, now: datetime) -> Admission:
    """Admit one verification of a key (a KeyRecord): a hit on each bucket of its own rate limit
    (flask-limiter's, which its API requests count in too), 1 on its quota, `cost` on its budget."""
    if not record.rate_limit and record.quota_limit is None and record.budget_limit is None:
        return Admission(None)
    counters = _counters()
    charges = _key_charges(counters.namespace, record.id, record.rate_limit, record.quota_limit, record.quota_period,
                           record.budget_limit, record.budget_period, cost, now.date())
    return counters.admit(charges)


def budget_counter(record, now: datetime) -> str | None:
    """The name of the counter that holds a key's budget for the window of `now` (None: no budget)."""
    if record.budget_limit is None:
        return None
    allowance = Allowance("budget", record.id, record.budget_limit, record.budget_period)
    return allowance.charge(0, now, _counters().namespace).name


def settle_budget(record, difference: int, admitted_at: datetime):
    """Add `difference` (negative: give back) to the key's budget counter of the window that held
    `admitted_at`, whatever the limit: what a call admitted at an estimate actually cost. Raises
    RedisError when the storage cannot be reached."""
    counter = budget_counter(record, admitted_at)
    if counter is not None and difference:
        _counters().adjust(counter, difference)


@functools.lru_cache(maxsize=4096)  # the hot path charges the same keys the same amounts all day
def _key_charges(namespace, key_id, rate_limit, quota_limit, quota_period, budget_limit, budget_period, cost, day):
    buckets = key_buckets(namespace, key_id, rate_limit) if rate_limit else ()
    allowances = _allowances(key_id, quota_limit, quota_period, budget_limit, budget_period)
    amounts = [(allowance, 1 if allowance.kind == "quota" else cost) for allowance in allowances]
    return _charges(buckets, amounts, datetime(day.year, day.month, day.day, tzinfo=UTC), namespace)


def used(allowance: Allowance, now: datetime) -> int:
    counters = _counters()
    return counters.get(allowance.charge(0, now, counters.namespace).name)


def reset(allowance: Allowance, now: datetime):
    """Start the current window over (an admin's reset)."""
    counters = _counters()
    counters.clear(allowance.charge(0, now, counters.namespace).name)


def allowances_of(record) -> tuple:
    """Return the quota and budget Allowances a key (model or KeyRecord) carries."""
    return _allowances(record.id, record.quota_limit, record.quota_period, record.budget_limit, record.budget_period)


@functools.lru_cache(maxsize=4096)
def _allowances(key_id, quota_limit, quota_period, budget_limit, budget_period) -> tuple:
    found = [Allowance("quota", key_id, quota_limit, quota_period)] if quota_limit is not None else []
    if budget_limit is not None:
        found.append(Allowance("budget", key_id, budget_limit, budget_period))
    return tuple(found)


def allowance_state(key, kind: str):
    """Return the JSON shape of a key's quota or budget with what remains, or None if unset.

    While the storage is unreachable `used` and `remaining` are None (the document still answers),
    and a warning is logged (once per REDIS_RETRY_SECONDS while the storage's breaker is open)."""
    limit = getattr(key, f"{kind}_limit")
    if limit is None:
        return None
    allowance = Allowance(kind, key.id, limit, getattr(key, f"{kind}_period"))
    now = datetime.now(UTC)
    try:
        spent = used(allowance, now)
    except RedisError:
        _report_storage_error(f"{kind} usage left out of a key's document")
        spent = None
    return allowance.state(spent, now)
