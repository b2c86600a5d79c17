"""A hung backend costs milliseconds, not seconds: the rate limit storage's circuit breaker, and a
deadline on every database round trip.

**Redis.** Every command of the limiter storage's Redis clients (flask-limiter's own hits and window
reads, our Lua counters in redis_counters, quota and budget reads, resets, the readiness ping) goes
through one `Breaker` per storage, so one per process in production (each app builds its own
Limiter and storage). A command that fails to reach Redis (ConnectionError, TimeoutError) after
spending time on it (at least QUICK_FAILURE: a timeout, at most REDIS_SOCKET_TIMEOUT or
REDIS_CONNECT_TIMEOUT) opens the breaker: for REDIS_RETRY_SECONDS every command fails at once with
`BreakerOpen`, a RedisError, so RATELIMIT_ON_STORAGE_ERROR applies as to any storage error (open:
served without limits; closed: 503 LIMITS_UNAVAILABLE). Then one trial command is let through
(half-open; the others keep failing at once): if Redis answers, the breaker closes and limits apply
again, else it stays open for another REDIS_RETRY_SECONDS. A quick failure (a refused connection:
Redis is down, not hung) opens nothing: trying Redis again costs no more than the breaker would, and
limits apply again as soon as Redis is back. While closed, a command costs one Python call, a
monotonic clock read and two attribute tests more (about 0.3 us, against 200 us or more for the
round trip itself); admissions served from a lease (redis_counters) make no command at all.

**PostgreSQL.** `create_app` passes `connect_timeout` (DATABASE_CONNECT_TIMEOUT) and the server's
`statement_timeout` (DATABASE_STATEMENT_TIMEOUT_MS) in the engine's connect_args, and a short
pool_timeout. The server cannot enforce its statement timeout when it is itself hung (stopped, or
its host frozen) while the TCP connection stays up, and a query would then wait forever; so
connect_args also carry DEADLINE_ARG and PING_DEADLINE_ARG, and the connection made is then a
`DeadlineConnection`: a round trip (a statement, a fetch, a commit, a rollback) that gets no answer
within the statement timeout plus DEADLINE_MARGIN, or the pool's pre-ping within the connect timeout,
closes the connection and raises `DatabaseTimeout`, a psycopg OperationalError (SQLAlchemy wraps it
in sqlalchemy.exc.OperationalError and drops the connection from the pool). A request that meets a
hung database thus fails after at most a pre-ping and a connect attempt (2 x 2 s by default).
"""
import functools
import logging
import math
import threading
import time

import psycopg
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

log = logging.getLogger(__name__)

# What tells that Redis was not reached. Error replies (ResponseError...) mean that it answered.
FAILURES = (RedisConnectionError, RedisTimeoutError)
QUICK_FAILURE = 0.005  # seconds: a failure faster than this (a refused connection) opens no breaker


class BreakerOpen(RedisConnectionError):
    """Raised instead of calling Redis while the breaker is open."""


class Breaker:
    """Fails calls at once for `retry_seconds` after a slow failure to reach Redis, then tries one."""

    def __init__(self, retry_seconds: float, name: str = "rate limit storage", quick_failure: float = QUICK_FAILURE):
        self.retry_seconds = retry_seconds
        self.name = name
        self.quick_failure = quick_failure
        self.openings = 0  # how many times it went from closed to open
        self._open_until = 0.0  # 0 while closed; else the time.monotonic() until which calls fail
        self._trial = False  # a trial call is under way (half-open)
        self._reported_at = float("-inf")  # when report_once() last answered True
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        """Open or half-open: the last call to reach Redis failed slowly."""
        return bool(self._open_until)

    def call(self, function, *args, **kwargs):
        """Call `function` unless the breaker is open (then raise BreakerOpen at once)."""
        if self._open_until:  # while closed: this test, the clock read and the `_trial` test below
            self._before_call()
        started = time.monotonic()
        try:
            result = function(*args, **kwargs)
        except FAILURES as error:
            self._failed(error, time.monotonic() - started)
            raise
        except Exception:  # an error reply: Redis answered
            if self._trial:
                self._answered()
            raise
        if self._trial:
            self._answered()
        return result

    def report_once(self) -> bool:
        """Return True at most once per `retry_seconds`: a storage error is worth a warning per
        outage (and per REDIS_RETRY_SECONDS while it lasts), not one per request."""
        with self._lock:
            now = time.monotonic()
            if now - self._reported_at < self.retry_seconds:
                return False
            self._reported_at = now
            return True

    def _before_call(self):
        with self._lock:
            now = time.monotonic()
            if not self._open_until:
                return  # closed meanwhile
            if now < self._open_until:
                raise BreakerOpen(f"{self.name} failed less than {self.retry_seconds:g} s ago; not called")
            # Half-open: this call is the trial; the others fail at once until it is answered.
            self._open_until = now + self.retry_seconds
            self._trial = True

    def _failed(self, error, took):
        with self._lock:
            if took < self.quick_failure:  # refused at once: calling again costs nothing, stay closed
                self._open_until, self._trial = 0.0, False
                return
            opened = not self._open_until
            self._open_until = time.monotonic() + self.retry_seconds
            self._trial = False
            if opened:
                self.openings += 1
        if opened:
            log.warning("%s unreachable (%s after %.3f s): not called for %g s, then tried again",
                        self.name, type(error).__name__, took, self.retry_seconds)

    def _answered(self):
        with self._lock:
            if not self._trial:
                return
            self._open_until = 0.0
            self._trial = False
        log.info("%s answers again", self.name)


def protect(storage, retry_seconds: float):
    """Route every command of a limits Redis storage (Redis, Sentinel or Cluster) through one
    Breaker, and return it; None for a storage without Redis clients (memory://). Idempotent."""
    existing = breaker_of(storage)
    if existing is not None or not hasattr(storage, "get_connection"):
        return existing
    breaker = Breaker(retry_seconds)
    clients = {id(client): client for client in (storage.get_connection(), storage.get_connection(readonly=True))}
    for client in clients.values():
        # Every command, script call (EVALSHA) and PING of a redis-py client goes through its
        # execute_command; an instance attribute takes precedence over the class's method.
        client.execute_command = functools.partial(breaker.call, client.execute_command)
    storage.latchkey_breaker = breaker
    return breaker


def breaker_of(storage):
    """Return the Breaker protecting `storage`, or None."""
    return getattr(storage, "latchkey_breaker", None)


# --- PostgreSQL ---------------------------------------------------------------------------------

DEADLINE_ARG = "latchkey_deadline"  # in connect_args: seconds a round trip may take; not for libpq
PING_DEADLINE_ARG = "latchkey_ping_deadline"  # in connect_args: seconds the pool's pre-ping may take
DEADLINE_MARGIN = 0.5  # seconds past the statement timeout: the server reports its own timeout first


class DatabaseTimeout(psycopg.errors.OperationalError):
    """The database did not answer a round trip within the deadline; the connection is closed."""


# psycopg's wait functions raise this (an OperationalError) when their timeout expires.
_WAIT_TIMEOUT = getattr(psycopg.errors, "_WaitTimeout", psycopg.errors.OperationalError)


class DeadlineConnection(psycopg.Connection):
    """A psycopg connection whose round trips give up after `deadline` seconds (None: never), and
    its pre-pings after `ping_deadline` seconds."""

    deadline = None
    ping_deadline = None

    def wait(self, gen, *args, **kwargs):
        # Every round trip on an open connection (execute, fetch, commit, rollback) waits here.
        if self.deadline is None or args or "timeout" in kwargs:
            return super().wait(gen, *args, **kwargs)
        try:
            return super().wait(gen, timeout=self.deadline, **kwargs)
        except _WAIT_TIMEOUT:
            # The exchange stopped half-way: the connection cannot be used again.
            self.close()
            raise DatabaseTimeout(f"the database did not answer within {self.deadline:g} s") from None

    def ping(self, do_ping):
        """Run the dialect's `do_ping(self)` within `ping_deadline`: a pre-ping is a liveness check,
        bounded like a connect, not like a statement (then the pool connects again)."""
        if self.ping_deadline is None:
            return do_ping(self)
        deadline, self.deadline = self.deadline, self.ping_deadline
        try:
            return do_ping(self)
        finally:
            self.deadline = deadline


def _ping_within_deadline(dialect):
    """Route the pool's pre-ping of `dialect`'s engine through DeadlineConnection.ping (once)."""
    if "do_ping" in vars(dialect):
        return
    do_ping = dialect.do_ping

    def ping(dbapi_connection):
        if isinstance(dbapi_connection, DeadlineConnection):
            return dbapi_connection.ping(do_ping)
        return do_ping(dbapi_connection)

    dialect.do_ping = ping  # the pool calls dialect.do_ping(connection) on checkout (pool_pre_ping)


@event.listens_for(Engine, "do_connect")
def _connect_with_deadline(dialect, connection_record, cargs, cparams):
    """Make a DeadlineConnection for engines whose connect_args carry DEADLINE_ARG or PING_DEADLINE_ARG."""
    ours = (DEADLINE_ARG, PING_DEADLINE_ARG)
    if not any(name in cparams for name in ours):
        return None  # SQLAlchemy connects as usual
    params = {name: value for name, value in cparams.items() if name not in ours}  # cparams is reused: no pop
    connection = DeadlineConnection.connect(*cargs, **params)
    connection.deadline = cparams.get(DEADLINE_ARG)
    connection.ping_deadline = cparams.get(PING_DEADLINE_ARG)
    _ping_within_deadline(dialect)
    return connection


def postgres_engine_options(config, uri: str) -> dict:
    """Return SQLALCHEMY_ENGINE_OPTIONS for PostgreSQL at `uri` with the timeouts that bound a hung
    server: connecting, waiting for a pooled connection, the pool's pre-ping (DATABASE_CONNECT_TIMEOUT
    each), and each round trip (the server's statement_timeout, and the client-side deadline above,
    for when the server is too hung to enforce it). DATABASE_STATEMENT_TIMEOUT_MS=0: neither of those."""
    connect_seconds = float(config["DATABASE_CONNECT_TIMEOUT"])
    statement_ms = int(config["DATABASE_STATEMENT_TIMEOUT_MS"])
    in_url = make_url(uri).query  # connect_args replace the URL's parameters of the same name
    options = dict(config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})  # the class's dict is shared
    connect_args = dict(options.get("connect_args") or {})
    if "connect_timeout" not in in_url:
        connect_args.setdefault("connect_timeout", max(math.ceil(connect_seconds), 1))  # whole s; libpq: >= 2
    connect_args[PING_DEADLINE_ARG] = connect_seconds  # a pre-ping is a liveness check, like a connect
    if statement_ms > 0:
        given = connect_args.get("options", in_url.get("options", ""))
        connect_args["options"] = f"{given} -c statement_timeout={statement_ms}".strip()
        connect_args[DEADLINE_ARG] = statement_ms / 1000 + DEADLINE_MARGIN
        connect_args[PING_DEADLINE_ARG] = min(connect_seconds, connect_args[DEADLINE_ARG])
    options["connect_args"] = connect_args
    options.setdefault("pool_timeout", connect_seconds)
    return options
