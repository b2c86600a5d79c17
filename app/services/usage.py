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

from sqlalchemy import bindparam, update

from app.extensions import db
from app.models import ApiKey

log = logging.getLogger(__name__)


class UsageBuffer:
    def __init__(self, app):
        self.app = app
        self.interval = app.config["USAGE_FLUSH_SECONDS"]
        self._lock = threading.Lock()
        self._last_used = {}
        self._pid = None

    def key_used(self, key_id: int, at):
        """Remember that key `key_id` was used at `at` (an aware UTC datetime)."""
        with self._lock:
            previous = self._last_used.get(key_id)
            if previous is None or at > previous:
                self._last_used[key_id] = at
        self._ensure_thread()

    def flush(self):
        """Write everything buffered so far in one batch per table."""
        with self._lock:
            last_used, self._last_used = self._last_used, {}
        if not last_used:
            return
        table = ApiKey.__table__
        statement = (update(table).where(table.c.id == bindparam("key_id"))
                     .where((table.c.last_used_at.is_(None)) | (table.c.last_used_at < bindparam("at")))
                     .values(last_used_at=bindparam("at")))
        with self.app.app_context():
            try:
                db.session.execute(statement, [{"key_id": k, "at": at} for k, at in last_used.items()])
                db.session.commit()
            except Exception:
                db.session.rollback()
                log.exception("usage flush failed; %d last-used times dropped", len(last_used))

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
