"""Cached key records: what the hot path needs to know about a key, without a database read.

Records are cached per worker until something changes (see KeyCache), so a revoke, suspend,
rotate, scope change or delete reaches every worker within KEY_CACHE_SECONDS (1 s by default),
and at once on the worker that made it.
"""
import ipaddress
import os
import threading
from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from psycopg import generators
from psycopg.adapt import Transformer
from psycopg.pq import ExecStatus, Format
from psycopg.types.json import set_json_loads
from sqlalchemy import bindparam, event, func, or_, select
from sqlalchemy.exc import OperationalError

from app.extensions import db, state
from app.models import ApiKey, KeyChange, User
from app.models.api_key import status_at
from app.services import clock
from app.services.breaker import DatabaseTimeout
from app.services.key_format import hash_secret, is_well_formed

CACHE_MAX_ENTRIES = 50_000
MAX_CHANGES_APPLIED = 1_000  # more changes at once than this: drop the whole cache instead


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
    allowed_ips: tuple
    networks: tuple
    metadata: dict
    rate_limit: str | None
    quota_limit: int | None
    quota_period: str | None
    budget_limit: int | None
    budget_period: str | None
    grace_until: datetime | None  # set when the secret is the one replaced by a rotation

    @classmethod
    def from_row(cls, row, matched_previous: bool):
        """The record of a row of _LOOKUP's columns (times as stored, naive UTC, from the prepared
        lookup; aware from SQLAlchemy's)."""
        return cls(
            id=row.id, user_id=row.user_id, owner_is_admin=row.owner_is_admin, name=row.name,
            scopes=tuple(row.scopes or ()), status=row.status, expires_at=_utc(row.expires_at),
            allowed_ips=tuple(row.allowed_ips or ()),
            networks=tuple(ipaddress.ip_network(cidr, strict=False) for cidr in row.allowed_ips or ()),
            metadata=dict(row.metadata or {}), rate_limit=row.rate_limit,
            quota_limit=row.quota_limit, quota_period=row.quota_period,
            budget_limit=row.budget_limit, budget_period=row.budget_period,
            grace_until=_utc(row.previous_valid_until) if matched_previous else None,
        )

    def status_at(self, now: datetime) -> str:
        return status_at(self.status, self.expires_at, now)

    def allows_address(self, address: str | None) -> bool:
        if not self.networks:
            return True
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        return any(ip in network for network in self.networks)


def _utc(moment: datetime | None) -> datetime | None:
    return moment if moment is None or moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class KeyCache:
    """digest -> KeyRecord, per worker process, kept until the key or its account changes.

    Every change that matters to a key (a key's or an account's mutation, from the API or the CLI,
    on any host) is written to the key change log in its own transaction, numbered in commit order
    (app/models/change.py). At most once per `ttl` seconds the cache reads the log past the last
    change it saw (an index range scan, usually empty) and drops the records of the keys and
    accounts named there; everything, if it fell behind the log. A change committed at T is thus
    refused by every worker by T + ttl, whatever order the transactions committed in; other audit
    events (logins, failed logins) touch nothing.

    Digests of well-formed keys that are not in the database are remembered for `ttl` too, so a
    caller repeating an unknown key costs no lookup; a key created afterwards works at once on the
    worker that created it (refresh_key_cache) and within `ttl` elsewhere.
    """

    def __init__(self, prefix: str, ttl: float):
        self.prefix = prefix  # API_KEY_PREFIX: a secret without it is no key
        self.ttl = ttl  # KEY_CACHE_SECONDS
        self._entries: dict[str, KeyRecord] = {}
        self._unknown: dict[str, float] = {}  # digest -> monotonic time it was found missing
        self._seq: int | None = None  # the last change log entry applied
        self._checked_at = float("-inf")
        self._lookup: Callable[[str], Any] | None = None

    def lookup(self, digest: str):
        """The row of _LOOKUP's columns for `digest` (current or replaced by a rotation), or None."""
        if self._lookup is None:
            engine = db.engine
            self._lookup = PreparedLookup(engine) if engine.dialect.driver == "psycopg" else _core_lookup
        return self._lookup(digest)

    def find(self, secret: str):
        """Return the record of the key `secret`, or None. A malformed key or a bad checksum is
        refused before any database lookup; a cached digest is always a well-formed key's."""
        ttl = self.ttl
        now = clock.monotonic()
        if now - self._checked_at >= ttl:
            self.catch_up()
            self._checked_at = now
        if not secret.isascii():  # no key has other characters (and a lone surrogate cannot be hashed)
            return None
        digest = hash_secret(secret)
        record = self._entries.get(digest)
        if record is None and is_well_formed(secret, self.prefix):
            missed_at = self._unknown.get(digest)
            if missed_at is not None and now - missed_at < ttl:
                return None
            record = _load(digest)
            if record is not None:
                _remember(self._entries, digest, record)
            else:
                _remember(self._unknown, digest, now)
        return record

    def catch_up(self):
        """Apply the change log entries committed since the last call."""
        if self._seq is None:  # nothing cached yet: start from the newest entry
            self._seq = db.session.scalar(select(func.max(KeyChange.seq))) or 0
            return
        rows = db.session.execute(
            select(KeyChange.seq, KeyChange.key_id, KeyChange.user_id)
            .where(KeyChange.seq > self._seq).order_by(KeyChange.seq).limit(MAX_CHANGES_APPLIED + 1)).all()
        if not rows:
            return
        if rows[0].seq != self._seq + 1 or len(rows) > MAX_CHANGES_APPLIED:  # behind the log: start over
            self._entries.clear()
            self._seq = db.session.scalar(select(func.max(KeyChange.seq))) or 0
            return
        keys = {row.key_id for row in rows if row.key_id is not None}
        users = {row.user_id for row in rows if row.user_id is not None}
        for digest, record in list(self._entries.items()):
            if record.id in keys or record.user_id in users:
                del self._entries[digest]
        self._seq = rows[-1].seq

    def forget_unknown(self):
        self._unknown.clear()


def _remember(cache: dict, digest: str, value):
    """Add an entry, evicting the oldest one (dicts keep insertion order) when the cache is full: at
    most CACHE_MAX_ENTRIES records and as many unknown digests per worker, and a workload of more
    distinct keys than that evicts one entry per miss, never the whole cache."""
    if len(cache) >= CACHE_MAX_ENTRIES:
        del cache[next(iter(cache))]
    cache[digest] = value


# The columns a KeyRecord needs, by digest or by the digest a rotation replaced: a Core select, so a
# cache miss builds no ORM object and touches no session.
_LOOKUP = (
    select(ApiKey.id, ApiKey.user_id, User.is_admin.label("owner_is_admin"), ApiKey.name, ApiKey.scopes,
           ApiKey.status, ApiKey.expires_at, ApiKey.allowed_ips, ApiKey.key_metadata.label("metadata"),
           ApiKey.rate_limit, ApiKey.quota_limit, ApiKey.quota_period, ApiKey.budget_limit, ApiKey.budget_period,
           ApiKey.digest, ApiKey.previous_valid_until)
    .join(User, User.id == ApiKey.user_id)
    .where(or_(ApiKey.digest == bindparam("digest"), ApiKey.previous_digest == bindparam("digest")))
)


_LookupRow = namedtuple("_LookupRow", tuple(column.name for column in _LOOKUP.selected_columns))  # type: ignore[misc]


def _load(digest: str):
    row = key_cache().lookup(digest)
    return None if row is None else KeyRecord.from_row(row, matched_previous=row.digest != digest)


def _core_lookup(digest: str):
    """_LOOKUP through SQLAlchemy (SQLite, and any driver but psycopg): in autocommit, on a connection
    of its own, so nothing is left in the request's session."""
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        return connection.execute(_LOOKUP, {"digest": digest}).first()


class PreparedLookup:
    """_LOOKUP on PostgreSQL: a prepared statement on a connection each thread keeps for it, in
    autocommit, outside the pool. A miss then costs one round trip and no checkout, transaction,
    compilation or planning. The round trip goes through psycopg's libpq layer (send the prepared
    statement, wait for its result, load the one row with the connection's loaders, binary format)
    rather than a cursor, whose Python-level execution machinery cost four times as much CPU as
    the exchange itself (README, issue 16).

    The connection is made by the engine (so it has the engine's timeouts and the breaker's
    deadline: breaker.DeadlineConnection) and detached from its pool. One that fails is closed, and
    the lookup is made once more on a new one (it may have died while idle), unless the database
    did not answer within the deadline (a retry would only double the wait). Errors reach the
    caller as SQLAlchemy's OperationalError, as every other database failure does. A forked
    process makes its own; the engine's dispose() closes them all."""

    def __init__(self, engine):
        self._engine = engine
        self._sql = str(_LOOKUP.compile(dialect=engine.dialect))
        assert self._sql.count("%(digest)s") == 2, self._sql  # psycopg's style; libpq's is $1
        self._libpq_sql = self._sql.replace("%(digest)s", "$1").encode()
        self._local = threading.local()
        self._open: set = set()  # (pid, connection) of every thread
        self._lock = threading.Lock()
        event.listen(engine, "engine_disposed", lambda _engine: self.close())

    def __call__(self, digest: str):
        try:
            return self._execute(digest)
        except psycopg.OperationalError as error:
            if isinstance(error, DatabaseTimeout):
                raise OperationalError(self._sql, None, error) from error
        try:
            return self._execute(digest)
        except psycopg.OperationalError as error:
            raise OperationalError(self._sql, None, error) from error

    def _execute(self, digest: str):
        held = getattr(self._local, "held", None)
        if held is None or held[0] != os.getpid() or held[1].closed:
            held = self._local.held = self._connect()
        try:
            return _exchange(held[1], held[2], _STATEMENT, (digest.encode(),))
        except psycopg.OperationalError:
            self._discard(held)
            raise

    def _connect(self):
        pooled = self._engine.raw_connection()
        connection = pooled.driver_connection
        pooled.detach()  # ours from now on: the pool neither counts nor recycles it
        connection.autocommit = True
        set_json_loads(orjson.loads, connection)
        held = (os.getpid(), connection, Transformer(connection))
        with self._lock:
            self._open.add(held)
        try:
            connection.pgconn.send_prepare(_STATEMENT, self._libpq_sql)
            _exchange(connection, None)
        except psycopg.OperationalError:
            self._discard(held)
            raise
        return held

    def _discard(self, held):
        with self._lock:
            self._open.discard(held)
        held[1].close()

    def close(self):
        """Close this process's lookup connections (a forked child leaves its parent's alone)."""
        with self._lock:
            mine = [held for held in self._open if held[0] == os.getpid()]
            self._open.difference_update(mine)
        for _, connection, _ in mine:
            connection.close()


_STATEMENT = b"latchkey_key_lookup"


def _exchange(connection, transformer, statement=None, parameters=()):
    """Send `statement` (prepared) with `parameters` on `connection`, or nothing (its prepare was
    sent), and wait for the answer within the connection's deadline (breaker.DeadlineConnection);
    return the first row as a _LookupRow, or None. A server error raises psycopg's error for it."""
    pgconn = connection.pgconn
    if statement is not None:
        pgconn.send_query_prepared(statement, parameters, result_format=Format.BINARY)
    result = connection.wait(generators.execute(pgconn))[-1]
    if result.status not in (ExecStatus.TUPLES_OK, ExecStatus.COMMAND_OK):
        raise psycopg.errors.error_from_result(result, encoding=connection.info.encoding)
    if transformer is None or result.ntuples == 0:
        return None
    transformer.set_pgresult(result)
    return transformer.load_row(0, _LookupRow._make)


def init_app(app):
    app.extensions["latchkey_key_cache"] = KeyCache(app.config["API_KEY_PREFIX"], app.config["KEY_CACHE_SECONDS"])


def key_cache() -> KeyCache:
    return state("latchkey_key_cache")


def refresh_key_cache():
    """After a change committed here: apply it to this worker's cache at once (not within the
    cache time), and forget unknown digests, which a new key may now have."""
    cache = key_cache()
    cache.catch_up()
    cache.forget_unknown()
