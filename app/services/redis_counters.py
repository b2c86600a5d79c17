"""Rate-limit buckets, quotas and budgets on Redis, admitted atomically across workers and hosts, with
leases so that most admissions make no round trip.

One Lua script admits a request: it counts the key's rate-limit buckets (flask-limiter's own
fixed-window buckets), then checks every allowance and adds to all of them or to none. When a
counter has plenty left, the same call leases this worker a share of it: at most 1/LEASE_SHARE of
what is left and LEASE_REQUESTS requests' worth. The lease is added to the counter at once, so its
units count as spent for everyone else, and the worker admits from it locally until it runs out.

- A limit is never exceeded: every unit admitted anywhere was added to the counter first.
- Near a limit nothing is leased (less than LEASE_SHARE requests' worth left), so every admission
  is a round trip and exact; far from it a worker holds at most 1/LEASE_SHARE of what is left.
- What a worker leased but did not use goes back at its next round trip, when it exits, and (all of
  it) when the worker holds more than MAX_LEASES leases; a worker that dies takes its lease with it
  (those units stay counted: the safe side).
- Remaining amounts count other workers' leases as spent.
- An admin's reset starts a counter over at what leases may still admit (see _RESET).

The scripts run on the limiter storage's own Redis client, so they share its timeouts
(REDIS_SOCKET_TIMEOUT, REDIS_CONNECT_TIMEOUT) and its circuit breaker (app/services/breaker.py):
while Redis is down or hung, a round trip fails at once with a RedisError, while admissions from a
lease held locally go on (those units were counted in Redis when they were leased). The admission
script, the one on the hot path (a key's first request in a worker), goes over a connection each
thread keeps for it, made with the client's settings: a pool checkout and release and the client's
command layers cost as much CPU as the exchange itself (README, issue 16).
"""
import atexit
import functools
import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass

from redis import ConnectionPool, Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError

from app.services import clock
from app.services.admission import Admission, Bucket
from app.services.breaker import breaker_of

LEASE_SHARE = 100
LEASE_REQUESTS = 100
MAX_LEASES = 10_000  # counters a worker holds leases on; past it, it gives them all back at once
WINDOW_MARGIN = 0.1  # seconds: a bucket lease lapses this long before its window ends
log = logging.getLogger(__name__)

# KEYS: rate-limit buckets, then allowance counters. ARGV: how many buckets, the worker's name,
# LEASE_SHARE, LEASE_REQUESTS; then per counter its amount, limit, expiry (a bucket's window in
# seconds; an allowance's expiry as epoch seconds, 0 for none) and the units of its old lease that
# the worker gives back. Returns {index of the first refusal or 0, counts after the call (leases
# included), units leased to the worker, milliseconds each counter lives}.
_ADMIT = """
local buckets, worker, share, most = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local function arg(i, field) return tonumber(ARGV[4 + (i - 1) * 4 + field]) end
for i = 1, #KEYS do
  if arg(i, 4) > 0 and redis.call('exists', KEYS[i]) == 1 then redis.call('decrby', KEYS[i], arg(i, 4)) end
end
local counts = {}
for i = 1, buckets do
  counts[i] = redis.call('incr', KEYS[i])
  if counts[i] == 1 then redis.call('expire', KEYS[i], arg(i, 3)) end
  if counts[i] > arg(i, 2) then return {i, counts, {}, {}} end
end
local refused = 0
for i = buckets + 1, #KEYS do
  counts[i] = tonumber(redis.call('get', KEYS[i]) or '0')
  if refused == 0 and counts[i] + arg(i, 1) > arg(i, 2) then refused = i end
end
if refused > 0 then return {refused, counts, {}, {}} end
local leases, ttls = {}, {}
for i = 1, #KEYS do
  local amount = arg(i, 1)
  if i > buckets then counts[i] = redis.call('incrby', KEYS[i], amount) end
  local lease = math.min(math.floor((arg(i, 2) - counts[i]) / share), most * amount)
  if amount == 0 or lease < amount then lease = 0 end
  if lease > 0 then counts[i] = redis.call('incrby', KEYS[i], lease) end
  if i > buckets then
    if arg(i, 3) > 0 then redis.call('expireat', KEYS[i], arg(i, 3)) end
    if lease > 0 then
      redis.call('hset', KEYS[i] .. ':leases', worker, lease)
      if arg(i, 3) > 0 then redis.call('expireat', KEYS[i] .. ':leases', arg(i, 3)) end
    else
      redis.call('hdel', KEYS[i] .. ':leases', worker)
    end
  end
  leases[i], ttls[i] = lease, redis.call('pttl', KEYS[i])
end
return {0, counts, leases, ttls}
"""

# KEYS: counters; ARGV[1]: the worker's name; ARGV[i + 1]: the unused units of KEYS[i] it gives back.
_GIVE_BACK = """
for i = 1, #KEYS do
  if redis.call('exists', KEYS[i]) == 1 then redis.call('decrby', KEYS[i], ARGV[i + 1]) end
  redis.call('hdel', KEYS[i] .. ':leases', ARGV[1])
end
"""

# KEYS[1]: an allowance counter. Start it over, still counting what the workers' leases (as last
# granted: at least what is left of them) may admit, so the new window is never exceeded.
# KEYS[1]: a counter. ARGV[1]: what to add (negative: give back), only while it exists (an
# allowance's window that ended is not made again without its expiry).
_ADJUST = """
if redis.call('exists', KEYS[1]) == 1 then return redis.call('incrby', KEYS[1], ARGV[1]) end
return 0
"""
_RESET = """
local outstanding = 0
for _, units in ipairs(redis.call('hvals', KEYS[1] .. ':leases')) do outstanding = outstanding + tonumber(units) end
if outstanding > 0 and redis.call('exists', KEYS[1]) == 1 then
  redis.call('set', KEYS[1], outstanding, 'KEEPTTL')
else
  redis.call('del', KEYS[1])
end
"""


@dataclass
class _Lease:
    units: int  # what this worker may still admit without asking
    limit: int  # the limit it was leased under: a changed limit voids it
    total: int  # the counter when it was leased, lease included
    lapses: float  # clock.monotonic() when its window ends
    granted: int = 0  # what it was leased with: differences given back never make it larger (adjust)


class RedisCounters:
    def __init__(self, storage, namespace: str = ""):
        self.namespace = namespace  # RATELIMIT_KEY_PREFIX, which allowance counters' names start with
        self._storage = storage
        self._prefixed = functools.lru_cache(maxsize=4096)(storage.prefixed_key)
        self._connection = storage.get_connection()
        self._admit = self._connection.register_script(_ADMIT)
        self._give_back = self._connection.register_script(_GIVE_BACK)
        self._adjust = self._connection.register_script(_ADJUST)
        self._reset = self._connection.register_script(_RESET)
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._local = threading.local()  # this thread's admission connection: (pid, connection)
        pool = getattr(self._connection, "connection_pool", None)
        self._held_pool = pool if type(self._connection) is Redis and type(pool) is ConnectionPool else None

    @property
    def client(self) -> Redis:
        """The Redis client these counters use (the limiter storage's, behind its breaker), for
        services that keep state beside them (reservations.py)."""
        return self._connection

    def admit(self, charges) -> Admission:
        """Admit one request: see allowances.admit. Buckets come first in `charges`."""
        # The keys in Redis: a flask-limiter bucket's as the limiter storage prefixes it.
        names = [self._prefixed(c.name) if isinstance(c.limit, Bucket) else c.name for c in charges]
        now = clock.monotonic()
        with self._lock:
            leases = self._own_leases()
            held = [leases.get(name) for name in names]
            for lease, charge in zip(held, charges, strict=True):
                if (lease is None or lease.limit != charge.limit.limit or lease.lapses <= now
                        or lease.units < charge.amount):
                    break
            else:  # every counter has a lease that covers the charge: no round trip
                used = []
                for lease, charge in zip(held, charges, strict=True):
                    lease.units -= charge.amount
                    used.append((charge.limit, lease.total - lease.units))
                return Admission(None, tuple(used))
            for name in names:  # the round trip gives back what is left of them
                leases.pop(name, None)
        return self._round_trip(charges, names, held, now)

    def _round_trip(self, charges, names, held, now) -> Admission:
        buckets = sum(isinstance(charge.limit, Bucket) for charge in charges)
        args = [buckets, self._worker, LEASE_SHARE, LEASE_REQUESTS]
        for charge, lease in zip(charges, held, strict=True):
            back = lease.units if lease is not None and lease.lapses > now else 0
            args += [charge.amount, charge.limit.limit, int(charge.expiry), back]
        refused, counts, leased, ttls = self._run_admit(names, args)
        refused, counts = int(refused), [int(count) for count in counts]
        if refused:  # a bucket's refusal stops the counts at that bucket
            checked = charges[:len(counts)]
            used = tuple((c.limit, n) for c, n in zip(checked, counts, strict=True))
            return Admission(charges[refused - 1].limit, used)
        leased = [int(units) for units in leased]
        with self._lock:
            leases = self._own_leases()
            for charge, name, units, count, ttl in zip(charges, names, leased, counts, ttls, strict=True):
                if units > 0:
                    lapses = now + int(ttl) / 1000 - WINDOW_MARGIN if int(ttl) > 0 else float("inf")
                    leases[name] = _Lease(units, charge.limit.limit, count, lapses, units)
            crowded = len(leases) > MAX_LEASES  # many keys seen once each: keep memory bounded
        if crowded:
            self.give_back()
        # As this worker sees it: what it holds itself is not spent yet.
        return Admission(None, tuple((c.limit, n - units) for c, n, units in zip(charges, counts, leased, strict=True)),
                         leased=sum(leased))

    def _run_admit(self, names, args):
        """The admission script's reply, over this thread's connection (through the storage's
        breaker); through the client when that is not a plain Redis client (Sentinel, Cluster)."""
        if self._held_pool is None:
            return self._admit(keys=names, args=args)
        breaker = breaker_of(self._storage)
        return breaker.call(self._admit_held, names, args) if breaker else self._admit_held(names, args)

    def _admit_held(self, names, args):
        try:
            return self._exchange(names, args)
        except RedisConnectionError as error:
            if type(error) is not RedisConnectionError:  # a timeout: asking again would double the wait
                raise
        return self._exchange(names, args)  # once more, on a new connection: it may have died while idle

    def _exchange(self, names, args):
        held = getattr(self._local, "held", None)
        if held is None or held[0] != os.getpid():  # a forked worker makes its own
            pool = self._held_pool
            assert pool is not None  # _run_admit comes here only with one
            held = self._local.held = (os.getpid(), pool.connection_class(**pool.connection_kwargs))
        connection = held[1]
        try:
            connection.send_command("EVALSHA", self._admit.sha, len(names), *names, *args)
            return connection.read_response()
        except NoScriptError:  # Redis lost its scripts (a restart): the client loads it again
            return self._admit(keys=names, args=args)
        except ResponseError:  # an error reply: the exchange is complete
            raise
        except BaseException:  # cut half-way (a timeout...): its reply must not answer the next one
            connection.disconnect()
            raise

    def _own_leases(self):
        # Leases belong to one process: a forked worker starts with none.
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._worker = f"{socket.gethostname()}:{self._pid}:{uuid.uuid4().hex[:8]}"
            self._leases: dict[str, _Lease] = {}
            atexit.register(self.give_back)
        return self._leases

    def give_back(self):
        """Return every unused lease (at exit, and when holding more than MAX_LEASES)."""
        with self._lock:
            now = clock.monotonic()
            live = [(name, lease.units) for name, lease in self._own_leases().items() if lease.lapses > now]
            self._leases.clear()
        if live:
            try:
                self._give_back(keys=[name for name, _ in live], args=[self._worker] + [units for _, units in live])
            except RedisError:
                log.warning("could not give back %d unused leases", len(live))

    def adjust(self, name, amount: int):
        """Add `amount` (negative: give back) to the counter `name`, whatever its limit: a cost found
        to differ from what was admitted. A lease this worker holds on it takes the difference, with
        no round trip, while it stays within what was leased (its units are counted in Redis: given
        back, they are this worker's to admit again and go back to Redis with the lease; taken, they
        were counted); else Redis."""
        with self._lock:
            lease = self._own_leases().get(name)
            if (lease is not None and lease.lapses > clock.monotonic()
                    and 0 <= lease.units - amount <= lease.granted):
                lease.units -= amount
                return
        self._adjust(keys=[name], args=[amount])

    def get(self, name):
        return int(self._connection.get(name) or 0)

    def clear(self, name):
        self._reset(keys=[name])
