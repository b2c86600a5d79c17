"""Buffered usage: last-used times and per-hour counters, written in batches.

Nothing here writes to the database on the request path: `count()` and `key_used()` are a dict
update under a lock. Each worker keeps what it saw in memory and a background thread writes it
every USAGE_FLUSH_SECONDS (2 s by default), so `last_used_at` and the usage counters are at most
that stale. USAGE_FLUSH_SECONDS=0 turns the thread off (the tests call `flush()` themselves).

What a worker counted is written unless the worker is killed with SIGKILL (it then loses at most
one interval of counts):
- Exits: `close()` (run at exit) stops the thread, waits for the write it may be in the middle of,
  and writes what is left, so a graceful reload or stop loses nothing.
- A failed write (database restarting, a deadlock) keeps its rows for the next flush: they are
  added to what comes in meanwhile. What is kept is bounded (USAGE_MAX_PENDING_ROWS counter rows);
  beyond it the oldest hours are dropped, and every drop is logged with the total so far.
- Rows of keys deleted since they were counted are skipped one by one (their usage went with
  them), never the batch: the keys are checked inside the writing transaction (on PostgreSQL
  locked, so a concurrent delete waits for the commit), and a foreign-key failure all the same is
  retried once, checking again.
- Rows are written in one order, (key, hour, outcome), keys locked by id first: two workers
  flushing the same keys wait for each other instead of deadlocking.

On PostgreSQL a batch costs a few statements whatever its size: it goes in with binary COPY into
two temporary tables, then one locking read, one UPDATE and one upsert join them to the real
tables. Row by row (an executemany per table) it cost about 70 us of a worker's CPU per distinct
key, which a load of many distinct keys pays on nearly every request (README, issue 16).
"""
import atexit
import heapq
import logging
import os
import threading
import time
from collections import defaultdict

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError

from app.extensions import db, state
from app.models import ApiKey, KeyUsage
from app.models.types import utcnow

log = logging.getLogger(__name__)

IN_CHUNK = 900  # key ids per IN (...): under SQLite's and PostgreSQL's bound-parameter limits
CLOSE_TIMEOUT = 20.0  # seconds an exit waits for a write in flight (gunicorn's graceful timeout is 30 s)
CLOSE_ATTEMPTS = 3  # final flushes tried at exit before what is left is logged as lost
ADDED = ("count", "cost", "input_tokens", "output_tokens")  # what a counter row's upsert adds to


def _zero():
    return [0, 0, 0, 0]


class UsageBuffer:
    def __init__(self, app):
        self.app = app
        self.interval = app.config["USAGE_FLUSH_SECONDS"]
        self.max_pending = app.config["USAGE_MAX_PENDING_ROWS"]
        # The hot path's lock: held for a dict update, never for I/O.
        self._lock = threading.Lock()
        self._last_used = {}
        # (key_id, hour, outcome, model) -> [count, cost, input tokens, output tokens]; model "": not an LLM call
        self._counters: defaultdict[tuple, list] = defaultdict(_zero)
        # One flush at a time per worker; it owns what a failed flush kept (_pending_*).
        self._flush_lock = threading.Lock()
        self._pending_last_used = {}
        self._pending_counters = {}
        self._failures = 0  # failed flushes in a row
        self.dropped_rows = self.dropped_requests = 0  # ever dropped by this worker (bound reached)
        self._pid = None
        self._thread = None
        self._stop = threading.Event()

    # The hot path.

    def key_used(self, key_id: int, at):
        """Remember that key `key_id` was used at `at` (an aware UTC datetime)."""
        with self._lock:
            previous = self._last_used.get(key_id)
            if previous is None or at > previous:
                self._last_used[key_id] = at
        self._ensure_thread()

    def count(self, key_id: int, outcome: str, cost: int = 0, at=None, model: str = ""):
        """Count one request or verification of key `key_id` with its outcome and cost, at `at` (now);
        a gateway call also names its model."""
        hour = (at or utcnow()).replace(minute=0, second=0, microsecond=0)
        with self._lock:
            totals = self._counters[(key_id, hour, outcome, model)]
            totals[0] += 1
            totals[1] += cost
        self._ensure_thread()

    def add_cost(self, key_id: int, outcome: str, cost: int, hour, model: str = "", tokens=(0, 0)):
        """Add `cost` (negative: take off) and (input, output) `tokens` to the counter row of `hour`
        without counting a request: a reservation's settlement (reservations.py)."""
        with self._lock:
            totals = self._counters[(key_id, hour, outcome, model)]
            totals[1] += cost
            totals[2] += tokens[0]
            totals[3] += tokens[1]
        self._ensure_thread()

    # Writing.

    def flush(self, wait: float = -1) -> bool:
        """Write everything buffered so far, with what earlier failed flushes kept; return True when
        nothing is left unwritten. A flush in progress elsewhere (the thread) is waited for, at
        most `wait` seconds if given, so that what it wrote is visible after this returns."""
        if not self._flush_lock.acquire(timeout=wait):
            return False
        try:
            with self._lock:
                last_used, self._last_used = self._last_used, {}
                counters, self._counters = self._counters, defaultdict(_zero)
            self._keep(last_used, counters)
            if not self._pending_last_used and not self._pending_counters:
                return True
            if self._write_pending():
                if self._failures:
                    log.warning("usage written after %d failed flushes; %d counter rows (%d requests) dropped "
                                "since this worker started", self._failures, self.dropped_rows, self.dropped_requests)
                self._failures = 0
                self._pending_last_used, self._pending_counters = {}, {}
                return True
            self._bound()
            return False
        finally:
            self._flush_lock.release()

    def _keep(self, last_used, counters):
        """Add a swapped-out batch to what is pending (usually nothing: the batch becomes it)."""
        if not self._pending_last_used:
            self._pending_last_used = last_used
        else:
            pending = self._pending_last_used
            for key_id, at in last_used.items():
                if key_id not in pending or at > pending[key_id]:
                    pending[key_id] = at
        if not self._pending_counters:
            self._pending_counters = counters
        else:
            pending = self._pending_counters
            for row, added in counters.items():
                totals = pending.get(row)
                if totals is None:
                    pending[row] = list(added)
                else:
                    for index, value in enumerate(added):
                        totals[index] += value

    def _write_pending(self) -> bool:
        last_used, counters = self._pending_last_used, self._pending_counters
        with self.app.app_context():
            error = None
            for _ in range(2):  # a deadlock, a key deleted under the check: once more, checking again
                try:
                    skipped = self._write(last_used, counters)
                    db.session.commit()
                    if skipped:
                        log.debug("usage of %d deleted keys skipped", skipped)
                    return True
                except Exception as exc:
                    _rollback()
                    error = exc
            if isinstance(error, IntegrityError):
                return self._write_each_key(last_used, counters)
        self._failures += 1
        rows, requests = len(counters), _requests(counters)
        message = ("usage flush failed (%s); %d counter rows (%d requests) and %d last-used times "
                   "kept for the next flush")
        arguments = (type(error).__name__, rows, requests, len(last_used))
        if self._failures == 1:
            log.warning(message, *arguments, exc_info=error)
        else:
            log.warning(message + " (%d failures in a row)", *arguments, self._failures)
        return False

    def _write(self, last_used, counters) -> int:
        """Write one batch in the current transaction, in a fixed order; return how many keys were
        skipped because they no longer exist."""
        wanted = {key_id for key_id in last_used} | {row[0] for row in counters}
        if db.engine.dialect.name == "postgresql":
            return len(wanted) - _write_postgres(last_used, counters)
        wanted_in_order = sorted(wanted)
        alive: set[int] = set()
        for start in range(0, len(wanted_in_order), IN_CHUNK):
            alive.update(db.session.scalars(
                select(ApiKey.id).where(ApiKey.id.in_(wanted_in_order[start:start + IN_CHUNK])).order_by(ApiKey.id)))
        table = ApiKey.__table__
        rows = [{"key_id": k, "at": last_used[k]} for k in sorted(last_used) if k in alive]
        if rows:
            db.session.execute(
                update(table).where(table.c.id == bindparam("key_id"))
                .where(table.c.last_used_at.is_(None) | (table.c.last_used_at < bindparam("at")))
                .values(last_used_at=bindparam("at"), updated_at=table.c.updated_at), rows)  # not an edit
        rows = [{"key_id": row[0], "hour": row[1], "outcome": row[2], "model": row[3], "count": totals[0],
                 "cost": totals[1], "input_tokens": totals[2], "output_tokens": totals[3]}
                for row, totals in sorted(counters.items()) if row[0] in alive]
        if rows:
            insert = sqlite.insert(KeyUsage.__table__)
            db.session.execute(insert.on_conflict_do_update(
                index_elements=["key_id", "hour", "outcome", "model"],
                set_={name: KeyUsage.__table__.c[name] + insert.excluded[name] for name in ADDED}), rows)
        return len(wanted) - len(alive)

    def _write_each_key(self, last_used, counters) -> bool:
        """A batch that broke a constraint twice: write it key by key, each in a savepoint, and drop
        only the rows of a key that still fails (logged), so that one key cannot hold back the rest."""
        by_key: defaultdict[int, dict] = defaultdict(dict)
        for row, totals in counters.items():
            by_key[row[0]][row] = totals
        try:
            for key_id in sorted(set(by_key) | set(last_used)):
                mine = {key_id: last_used[key_id]} if key_id in last_used else {}
                try:
                    with db.session.begin_nested():
                        self._write(mine, by_key.get(key_id, {}))
                except IntegrityError:
                    rows = by_key.get(key_id, {})
                    self._count_dropped(rows)
                    log.error("usage of key %d dropped: %d counter rows (%d requests) break a constraint; "
                              "%d counter rows (%d requests) dropped since this worker started", key_id,
                              len(rows), _requests(rows), self.dropped_rows, self.dropped_requests)
            db.session.commit()
            return True
        except Exception as exc:
            _rollback()
            self._failures += 1
            log.warning("usage flush failed (%s); %d counter rows and %d last-used times kept for the next "
                        "flush", type(exc).__name__, len(counters), len(last_used), exc_info=exc)
            return False

    def _bound(self):
        """Keep at most `max_pending` counter rows (and last-used times): drop the oldest, logged."""
        counters = self._pending_counters
        excess = len(counters) - self.max_pending
        if excess > 0:
            oldest = heapq.nsmallest(excess, counters, key=lambda row: (row[1], row[0], row[2], row[3]))
            dropped = {row: counters.pop(row) for row in oldest}
            self._count_dropped(dropped)
            log.error("usage buffer full (%d counter rows kept through failed flushes): dropped %d counter rows "
                      "(%d requests) of the oldest hours; %d counter rows (%d requests) dropped since this "
                      "worker started", self.max_pending, len(dropped), _requests(dropped),
                      self.dropped_rows, self.dropped_requests)
        times = self._pending_last_used
        excess = len(times) - self.max_pending
        if excess > 0:
            for key_id in heapq.nsmallest(excess, times, key=times.__getitem__):
                del times[key_id]
            log.error("usage buffer full: dropped the last-used times of %d keys", excess)

    def _count_dropped(self, rows):
        self.dropped_rows += len(rows)
        self.dropped_requests += _requests(rows)

    # The thread, and exits.

    def _ensure_thread(self):
        # Started lazily in each worker process: threads do not survive gunicorn's fork.
        if self.interval <= 0 or self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, name="usage-flush", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _run(self):
        stop = self._stop
        while not stop.wait(self.interval):
            try:
                self.flush()
            except Exception:  # never let the thread die: the next interval tries again
                log.exception("usage flush raised")

    def close(self, timeout: float = CLOSE_TIMEOUT):
        """Stop the thread, wait for the write it may be in, then write what is left (run at exit:
        a graceful reload or stop loses nothing). Harmless to call again."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        thread = self._thread
        if thread is not None and self._pid == os.getpid() and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.error("usage flush thread still writing after %.0f s at exit", timeout)
        for attempt in range(CLOSE_ATTEMPTS):  # the database may be back in a moment; not past the deadline
            if attempt:
                if time.monotonic() + 0.2 * attempt >= deadline:
                    break
                time.sleep(0.2 * attempt)
            if self.flush(wait=max(0.0, deadline - time.monotonic())):
                return True
        rows = self._pending_counters
        log.error("usage lost at exit: %d counter rows (%d requests) and %d last-used times %s",
                  len(rows), _requests(rows), len(self._pending_last_used),
                  "still being written by the flush thread" if thread is not None and thread.is_alive()
                  else "could not be written")
        return False


def _rollback():
    try:
        db.session.rollback()
    except Exception:  # the connection is gone: the session is discarded with the app context
        log.debug("rollback after a failed usage flush failed", exc_info=True)


def init_app(app):
    app.extensions["latchkey_usage"] = UsageBuffer(app)


# PostgreSQL's batch (see the module's docstring). The temporary tables live as long as the
# connection and are emptied at every commit; a batch written key by key (_write_each_key, in
# savepoints) empties them first.
_BATCH_TABLES = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS latchkey_last_used (key_id int4, at timestamptz) ON COMMIT DELETE ROWS",
    "CREATE TEMPORARY TABLE IF NOT EXISTS latchkey_counts (key_id int4, hour timestamptz, outcome text, "
    "model text, count int8, cost int8, input_tokens int8, output_tokens int8) ON COMMIT DELETE ROWS",
    "DELETE FROM latchkey_last_used",
    "DELETE FROM latchkey_counts",
)
# A key deleted now waits for this commit; one deleted before is not here, and its rows are skipped.
_LOCK_KEYS = ("SELECT id FROM api_keys WHERE id IN (SELECT key_id FROM latchkey_last_used UNION "
              "SELECT key_id FROM latchkey_counts) ORDER BY id FOR NO KEY UPDATE")
_UPDATE_LAST_USED = (  # stored as naive UTC (models.types.UTCDateTime); updated_at stays: not an edit
    "UPDATE api_keys SET last_used_at = u.at AT TIME ZONE 'UTC' FROM latchkey_last_used u WHERE api_keys.id = u.key_id "
    "AND (api_keys.last_used_at IS NULL OR api_keys.last_used_at < u.at AT TIME ZONE 'UTC')")
_ADD_COUNTS = (
    "INSERT INTO key_usage (key_id, hour, outcome, model, count, cost, input_tokens, output_tokens) "
    "SELECT c.key_id, c.hour AT TIME ZONE 'UTC', c.outcome, c.model, c.count, c.cost, c.input_tokens, "
    "c.output_tokens FROM latchkey_counts c JOIN api_keys k ON k.id = c.key_id "
    "ORDER BY c.key_id, c.hour, c.outcome, c.model ON CONFLICT (key_id, hour, outcome, model) DO UPDATE SET "
    + ", ".join(f"{name} = key_usage.{name} + excluded.{name}" for name in ("count", "cost", "input_tokens",
                                                                           "output_tokens")))


def _write_postgres(last_used, counters) -> int:
    """UsageBuffer._write on PostgreSQL, on the session's connection and in its transaction; return
    how many of the batch's keys exist (and are now locked until the commit). Statements go through
    SQLAlchemy (its events see them), COPY through the driver."""
    connection = db.session.connection()
    for statement in _BATCH_TABLES:
        connection.exec_driver_sql(statement)
    driver = connection.connection.driver_connection
    assert driver is not None  # a live connection, in the session's transaction
    with driver.cursor() as cursor:
        with cursor.copy("COPY latchkey_last_used (key_id, at) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "timestamptz"])
            for row in last_used.items():
                copy.write_row(row)
        columns = "key_id, hour, outcome, model, count, cost, input_tokens, output_tokens"
        with cursor.copy(f"COPY latchkey_counts ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "timestamptz", "text", "text", "int8", "int8", "int8", "int8"])
            for row, totals in counters.items():
                copy.write_row((*row, *totals))
    alive = len(connection.exec_driver_sql(_LOCK_KEYS).all())
    connection.exec_driver_sql(_UPDATE_LAST_USED)
    connection.exec_driver_sql(_ADD_COUNTS)
    return alive


def _requests(counters) -> int:
    """How many requests counter rows count."""
    return sum(totals[0] for totals in counters.values())


def buffer() -> UsageBuffer:
    return state("latchkey_usage")
