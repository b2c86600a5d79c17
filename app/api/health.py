"""Liveness and readiness probes, outside /v1 and exempt from rate limits (see create_app).

/readyz answers within about READY_DATABASE_SECONDS + REDIS_SOCKET_TIMEOUT even when a backend
hangs: the rate limit storage check goes through the storage's circuit breaker (false at once while
it is open), and the database check runs on a thread of its own that readyz waits for at most
READY_DATABASE_SECONDS (a probe still running from an earlier call is not started again).
"""
import os
import threading
import time
import weakref

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from app.extensions import db, limiter

bp = Blueprint("health", __name__)

READY_DATABASE_SECONDS = 0.3  # a database that does not answer SELECT 1 within this is not ready


@bp.get("/healthz")
def healthz():
    """Return 200 while the process serves requests."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Return 200 when the database and the limiter storage answer, else 503 naming what failed."""
    checks = {"database": _database_ok(), "rate_limit_storage": _limiter_storage_ok()}
    ready = all(checks.values())
    return jsonify(status="ready" if ready else "unavailable", checks=checks), 200 if ready else 503


def _database_ok() -> bool:
    engine = db.engine
    if engine.dialect.name == "sqlite":  # a local file (or memory): nothing to hang on the network
        try:
            db.session.execute(text("SELECT 1"))
            return True
        except Exception:
            db.session.rollback()
            current_app.logger.warning("readiness: database unreachable")
            return False
    probe = _DatabaseProbe.current(engine)
    if probe.done.wait(max(probe.started + READY_DATABASE_SECONDS - time.monotonic(), 0)) and probe.ok:
        return True
    current_app.logger.warning("readiness: database unreachable" if probe.done.is_set()
                               else "readiness: database did not answer in time")
    return False


class _DatabaseProbe:
    """A `SELECT 1` on a thread of its own, on a connection of the engine's pool."""

    _last = weakref.WeakKeyDictionary()  # engine -> the last probe started in this process
    _lock = threading.Lock()

    def __init__(self, engine):
        self.pid = os.getpid()
        self.started = time.monotonic()
        self.done = threading.Event()
        self.ok = False
        threading.Thread(target=self._run, args=(engine,), name="readyz-database", daemon=True).start()

    @classmethod
    def current(cls, engine):
        """Return the probe still running for `engine` (a hung one answers nothing new), else a new one."""
        with cls._lock:
            probe = cls._last.get(engine)
            if probe is None or probe.done.is_set() or probe.pid != os.getpid():  # a fork has no threads
                probe = cls._last[engine] = cls(engine)
            return probe

    def _run(self, engine):
        try:
            with engine.connect() as connection:  # bounded by the connect timeout and the round-trip deadline
                connection.execute(text("SELECT 1"))
            self.ok = True
        except Exception:  # noqa: BLE001  (any failure: not ready)
            pass
        finally:
            self.done.set()


def _limiter_storage_ok() -> bool:
    try:
        return bool(limiter.storage.check())  # a ping; False at once while the storage's breaker is open
    except Exception:
        current_app.logger.warning("readiness: rate limit storage unreachable")
        return False
