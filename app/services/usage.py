"""Buffered usage: last-used times and per-hour counters, written in batches.

Nothing here writes to the database on the request path. Each worker keeps what it saw in memory
and a background thread writes it every USAGE_FLUSH_SECONDS (2 s by default), so `last_used_at`
and the usage counters are at most that stale. USAGE_FLUSH_SECONDS=0 turns the thread off (the
tests call `flush()` themselves). A worker that dies loses at most that interval of counts.
"""
import atexit
import logging
import os
import threading
from collections import defaultdict

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db
from app.models import ApiKey, KeyUsage
from app.models.types import utcnow

log = logging.getLogger(__name__)


class UsageBuffer:
    def __init__(self, app):
        self.app = app
        self.interval = app.config["USAGE_FLUSH_SECONDS"]
        self._lock = threading.Lock()
        self._last_used = {}
        self._counters = defaultdict(lambda: [0, 0])  # (key_id, hour, outcome) -> [count, cost]
        self._pid = None

    def key_used(self, key_id: int, at):
        """Remember that key `key_id` was used at `at` (an aware UTC datetime)."""
        with self._lock:
            previous = self._last_used.get(key_id)
            if previous is None or at > previous:
                self._last_used[key_id] = at
        self._ensure_thread()

    def count(self, key_id: int, outcome: str, cost: int = 0):
        """Count one request or verification of key `key_id` with its outcome and cost."""
        hour = utcnow().replace(minute=0, second=0, microsecond=0)
        with self._lock:
            totals = self._counters[(key_id, hour, outcome)]
            totals[0] += 1
            totals[1] += cost
        self._ensure_thread()

    def flush(self):
        """Write everything buffered so far: one UPDATE batch and one upsert batch."""
        with self._lock:
            last_used, self._last_used = self._last_used, {}
            counters, self._counters = self._counters, defaultdict(lambda: [0, 0])
        if not last_used and not counters:
            return
        with self.app.app_context():
            try:
                self._write(last_used, counters)
                db.session.commit()
            except Exception:
                db.session.rollback()
                log.exception("usage flush failed; %d last-used times and %d counters dropped",
                              len(last_used), len(counters))

    def _write(self, last_used, counters):
        # Keys deleted since they were counted are skipped (their usage went with them).
        wanted = {key_id for key_id in last_used} | {key for key, _, _ in counters}
        alive = set(db.session.scalars(select(ApiKey.id).where(ApiKey.id.in_(wanted))))
        table = ApiKey.__table__
        rows = [{"key_id": k, "at": at} for k, at in last_used.items() if k in alive]
        if rows:
            db.session.execute(
                update(table).where(table.c.id == bindparam("key_id"))
                .where(table.c.last_used_at.is_(None) | (table.c.last_used_at < bindparam("at")))
                .values(last_used_at=bindparam("at"), updated_at=table.c.updated_at), rows)  # not an edit
        rows = [{"key_id": k, "hour": h, "outcome": o, "count": n, "cost": c}
                for (k, h, o), (n, c) in counters.items() if k in alive]
        if rows:
            dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
            insert = dialect.insert(KeyUsage.__table__)
            db.session.execute(insert.on_conflict_do_update(
                index_elements=["key_id", "hour", "outcome"],
                set_={"count": KeyUsage.__table__.c.count + insert.excluded.count,
                      "cost": KeyUsage.__table__.c.cost + insert.excluded.cost}), rows)

    def _ensure_thread(self):
        # Started lazily in each worker process: threads do not survive gunicorn's fork.
        if self.interval <= 0 or self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
        threading.Thread(target=self._run, name="usage-flush", daemon=True).start()
        atexit.register(self.flush)

    def _run(self):
        stop = threading.Event()
        while not stop.wait(self.interval):
            self.flush()


def init_app(app):
    app.extensions["latchkey_usage"] = UsageBuffer(app)


def buffer() -> UsageBuffer:
    from flask import current_app

    return current_app.extensions["latchkey_usage"]
