"""Usage counts survive what a worker goes through: its exit (a graceful reload or stop), a failed
flush, a key deleted mid-flush, and other workers flushing the same keys at the same time.

Issue 10, item 2 (exits) and item 3 (failed flushes). The in-process tests run on every backend; the
gunicorn test, like tests/test_processes.py, only when RATELIMIT_STORAGE_URI is redis:// (CI's
second pass).
"""
import logging
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
import requests
from sqlalchemy import delete, event, func, select

from app.extensions import db
from app.models import ApiKey, KeyUsage
from app.services import usage
from tests.helpers import Seeder, delete_keys
from tests.servers import ROOT, fresh_database, gunicorn_master, redis_url_or_none, run_migrations, service_env

needs_redis = pytest.mark.skipif(redis_url_or_none() is None, reason="needs RATELIMIT_STORAGE_URI=redis://...")


def totals(app, key_ids=None):
    """{(key id, outcome): (count, cost)} summed over hours, read from the database."""
    with app.app_context():
        query = select(KeyUsage.key_id, KeyUsage.outcome, func.sum(KeyUsage.count), func.sum(KeyUsage.cost)) \
            .group_by(KeyUsage.key_id, KeyUsage.outcome)
        if key_ids is not None:
            query = query.where(KeyUsage.key_id.in_(list(key_ids)))
        return {(k, o): (int(n), int(c)) for k, o, n, c in db.session.execute(query)}


def last_used(app, key_id):
    with app.app_context():
        return db.session.get(ApiKey, key_id).last_used_at


class FailingStatements:
    """Make the database refuse statements that contain `marker`, as a restarting server would:
    the DBAPI's own OperationalError, raised before the statement is sent, `times` times."""

    def __init__(self, app, marker="INTO key_usage", times=1):
        self.marker, self.left, self.raised = marker, times, 0
        with app.app_context():
            self.engine = db.engine
        event.listen(self.engine, "before_cursor_execute", self)

    def __call__(self, conn, cursor, statement, parameters, context, executemany):
        if self.marker in statement and self.left != 0:
            self.left -= 1
            self.raised += 1
            raise conn.dialect.loaded_dbapi.OperationalError("injected: the server closed the connection")

    def stop(self):
        event.remove(self.engine, "before_cursor_execute", self)


@contextmanager
def refusing(app, outcome):
    """Make the database itself refuse usage rows with `outcome`, as a constraint: a CHECK on
    PostgreSQL (NOT VALID: rows already there stay), a trigger on SQLite."""
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            add = f"ALTER TABLE key_usage ADD CONSTRAINT refused CHECK (outcome <> '{outcome}') NOT VALID"
            drop = "ALTER TABLE key_usage DROP CONSTRAINT refused"
        else:
            add = (f"CREATE TRIGGER refused BEFORE INSERT ON key_usage WHEN NEW.outcome = '{outcome}' "
                   "BEGIN SELECT RAISE(ABORT, 'refused'); END")
            drop = "DROP TRIGGER refused"
        with db.engine.begin() as connection:
            connection.exec_driver_sql(add)
    try:
        yield
    finally:
        with app.app_context(), db.engine.begin() as connection:
            connection.exec_driver_sql(drop)


# Item 2: exits write everything.

EXITING_WORKER = textwrap.dedent("""
    import sys, threading, time
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from app import create_app
    from app.models.types import utcnow
    from config import TestingConfig

    url, key_id = sys.argv[1], int(sys.argv[2])
    slowed = []

    @event.listens_for(Engine, "before_cursor_execute")
    def slow_first_background_write(conn, cursor, statement, parameters, context, executemany):
        # The flush thread's first write takes a while: the worker is told to exit meanwhile.
        if threading.current_thread() is not threading.main_thread() and not slowed:
            slowed.append(statement)
            time.sleep(1.0)

    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=url, USAGE_FLUSH_SECONDS=0.05)
    buffer = app.extensions["latchkey_usage"]
    for _ in range(100):
        buffer.count(key_id, "VALID", 2)
    buffer.key_used(key_id, utcnow())
    deadline = time.monotonic() + 5
    while not slowed and time.monotonic() < deadline:  # the thread took the 100 and is writing them
        time.sleep(0.01)
    for _ in range(50):
        buffer.count(key_id, "RATE_LIMITED")
    print("exiting", flush=True)
    # The interpreter exits here, as a gunicorn worker does after SIGTERM or a reload's SIGTERM.
""")


def test_item2_an_exiting_worker_writes_the_batch_its_flush_thread_was_writing(app, make, database_url):
    key = make.key(make.user())
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", EXITING_WORKER, database_url, str(key.id)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "exiting" in result.stdout
    assert totals(app) == {(key.id, "VALID"): (100, 200), (key.id, "RATE_LIMITED"): (50, 0)}
    assert last_used(app, key.id) is not None
    assert time.monotonic() - started < 30


def test_item2_close_stops_the_thread_and_writes_everything(app, make):
    key = make.key(make.user())
    buffer = usage.UsageBuffer(app)
    buffer.interval = 60  # a thread that would not flush on its own before the test ends
    before = set(threading.enumerate())
    buffer.count(key.id, "VALID", 3)
    [thread] = [t for t in threading.enumerate() if t not in before and t.name == "usage-flush"]
    started = time.monotonic()
    buffer.close()
    assert time.monotonic() - started < 5  # the thread is woken, not waited out
    assert not thread.is_alive()
    assert totals(app) == {(key.id, "VALID"): (1, 3)}
    buffer.close()  # twice is harmless (atexit runs it again)


# Item 3: a failed flush loses nothing but what is bounded, and only what it must.

def test_item3_a_failed_flush_keeps_its_batch_for_the_next_flush(app, make, caplog):
    owner = make.user()
    keys = [make.key(owner) for _ in range(3)]
    buffer = app.extensions["latchkey_usage"]
    for key in keys:
        buffer.count(key.id, "VALID", 1)
        buffer.count(key.id, "RATE_LIMITED")
    failing = FailingStatements(app, times=2)  # the flush and its immediate retry both fail
    try:
        buffer.flush()
    finally:
        failing.stop()
    assert failing.raised >= 1
    assert totals(app) == {}  # nothing written yet: the database refused
    assert any("kept for the next flush" in r.getMessage() for r in caplog.records)
    for key in keys:  # meanwhile the worker keeps counting
        buffer.count(key.id, "VALID", 1)
    buffer.flush()
    expected = {}
    for key in keys:
        expected[(key.id, "VALID")] = (2, 2)
        expected[(key.id, "RATE_LIMITED")] = (1, 0)
    assert totals(app) == expected


def test_item3_a_key_deleted_between_the_check_and_the_insert_loses_only_its_own_counts(app, make):
    owner = make.user()
    doomed, kept, also_kept = make.key(owner), make.key(owner), make.key(owner)
    buffer = app.extensions["latchkey_usage"]
    for key in (doomed, kept, also_kept):
        for _ in range(4):
            buffer.count(key.id, "INSUFFICIENT_SCOPES")

    deleter_done = threading.Event()

    def delete_doomed():
        with app.app_context():
            db.session.execute(delete(ApiKey).where(ApiKey.id == doomed.id))
            db.session.commit()
        deleter_done.set()

    deleter = threading.Thread(target=delete_doomed)

    def just_before_the_insert(conn, cursor, statement, parameters, context, executemany):
        # The key goes, in another transaction, after the flush checked which keys exist.
        if "INTO key_usage" in statement and not deleter.is_alive() and not deleter_done.is_set():
            deleter.start()
            deleter_done.wait(1.0)  # a flush that locked the key makes the delete wait for its commit

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", just_before_the_insert)
    try:
        buffer.flush()
    finally:
        event.remove(engine, "before_cursor_execute", just_before_the_insert)
    deleter.join(30)
    assert deleter_done.is_set()
    assert make.row(ApiKey, doomed.id) is None
    assert totals(app) == {(kept.id, "INSUFFICIENT_SCOPES"): (4, 0), (also_kept.id, "INSUFFICIENT_SCOPES"): (4, 0)}
    buffer.flush()  # nothing pending: the doomed key's counts went with it, and nothing else is retried
    assert totals(app) == {(kept.id, "INSUFFICIENT_SCOPES"): (4, 0), (also_kept.id, "INSUFFICIENT_SCOPES"): (4, 0)}


def test_item3_rows_that_keep_breaking_a_constraint_cost_only_their_own_key(app, make, caplog):
    owner = make.user()
    poisoned, healthy = make.key(owner), make.key(owner)
    buffer = app.extensions["latchkey_usage"]
    buffer.count(poisoned.id, "POISON")
    buffer.count(poisoned.id, "VALID", 1)
    buffer.count(healthy.id, "VALID", 5)
    buffer.count(healthy.id, "RATE_LIMITED")

    with refusing(app, "POISON"):
        buffer.flush()
        buffer.flush()  # nothing is kept: the next flush has nothing to retry
    assert totals(app) == {(healthy.id, "VALID"): (1, 5), (healthy.id, "RATE_LIMITED"): (1, 0)}
    dropped = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and "dropped" in r.getMessage()]
    assert dropped == [f"usage of key {poisoned.id} dropped: 2 counter rows (2 requests) break a constraint; "
                       "2 counter rows (2 requests) dropped since this worker started"]


def test_item3_concurrent_flushes_of_the_same_keys_never_deadlock(app, make, database_url, caplog):
    if not database_url.startswith("postgres"):
        pytest.skip("row locks: SQLite serializes writers")
    owner = make.user()
    keys = [make.key(owner).id for _ in range(40)]
    outcomes = [f"OUTCOME_{i}" for i in range(25)]
    rounds = 6
    expected = Counter()
    for _ in range(rounds):
        buffers = [usage.UsageBuffer(app), usage.UsageBuffer(app)]
        # Two workers saw the same keys in opposite orders: their batches list rows in those orders.
        for buffer, order in zip(buffers, (keys, keys[::-1]), strict=True):
            for key_id in order:
                buffer.key_used(key_id, datetime.now(UTC))
                for outcome in outcomes:
                    buffer.count(key_id, outcome, 1)
                    expected[(key_id, outcome)] += 1
        barrier = threading.Barrier(2)

        def flush(buffer, barrier=barrier):
            barrier.wait()
            buffer.flush()

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(flush, buffers))
    assert totals(app) == {k: (n, n) for k, n in expected.items()}
    failures = [r.getMessage() for r in caplog.records if r.name == usage.__name__ and r.levelno >= logging.WARNING]
    assert failures == []  # not one deadlock, so not one retry


@pytest.mark.parametrize("config_overrides", [{"USAGE_MAX_PENDING_ROWS": 5}])
def test_item3_a_batch_kept_through_an_outage_is_bounded_and_what_is_dropped_is_logged(app, make, caplog,
                                                                                       monkeypatch):
    key = make.key(make.user())
    buffer = app.extensions["latchkey_usage"]
    hours = [datetime(2026, 11, 22, h, 30, tzinfo=UTC) for h in range(8)]
    failing = FailingStatements(app, times=-1)  # the database stays down for 8 flushes
    try:
        for hour in hours:
            monkeypatch.setattr(usage, "utcnow", lambda hour=hour: hour)
            for _ in range(hour.hour + 1):
                buffer.count(key.id, "VALID", 10)
            buffer.flush()
    finally:
        failing.stop()
        monkeypatch.undo()
    assert totals(app) == {}
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage() and r.levelno >= logging.ERROR]
    assert dropped, "a drop is logged"
    # The three oldest hours went (1 + 2 + 3 = 6 requests); the log says how much, in total so far.
    assert "6 requests" in dropped[-1] and "3 counter rows" in dropped[-1]
    buffer.flush()  # the database is back
    with app.app_context():
        rows = {(row.hour.hour, row.count, row.cost) for row in db.session.scalars(select(KeyUsage))}
    assert rows == {(h, h + 1, 10 * (h + 1)) for h in range(3, 8)}


# Item 2, across processes: a graceful reload (SIGHUP) and a graceful stop lose nothing.

def seed(env, keys):
    seeder = Seeder(env)
    service_id, _ = seeder.user("durability-service@example.com", admin=True)
    verifier = seeder.key(service_id, scopes=["keys:verify"])
    owner_id, _ = seeder.user("durability-owner@example.com")
    checked = {}
    for i in range(keys):
        secret = seeder.key(owner_id, scopes=["llm:*"], status="revoked" if i % 10 == 9 else "active")
        checked[secret] = seeder.key_id(secret)
    return seeder, verifier, checked


class Load:
    """Threads that verify keys until stopped, remembering every answer by (key id, code) and cost."""

    def __init__(self, base, verifier, checked, threads=8):
        self.url = f"{base}/v1/api-keys/verify"
        self.headers = {"X-API-Key": verifier}
        self.checked = list(checked.items())
        self.answers, self.errors = Counter(), []
        self.cost = Counter()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(threads)]

    def run(self, index):
        session = requests.Session()
        i = index
        while not self.stopping.is_set():
            secret, key_id = self.checked[i % len(self.checked)]
            scopes = ["llm:gpt-4o"] if i % 7 else ["rag:search"]
            cost = i % 4
            i += len(self.threads)
            try:
                answer = session.post(self.url, json={"key": secret, "scopes": scopes, "cost": cost},
                                      headers=self.headers, timeout=30).json()
                code = answer["meta"]["code"]
            except Exception as exc:  # no answer: whether it was counted is unknown, so the test fails
                with self.lock:
                    self.errors.append(repr(exc))
                continue
            with self.lock:
                self.answers[(key_id, code)] += 1
                if code == "VALID":
                    self.cost[key_id] += cost

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for thread in self.threads:
            thread.join(60)

    def wait_for(self, answers, timeout=30.0):
        """Wait until `answers` more answers came in (at most `timeout` seconds: the machine may be busy)."""
        goal = sum(self.answers.values()) + answers
        deadline = time.monotonic() + timeout
        while sum(self.answers.values()) < goal and time.monotonic() < deadline:
            time.sleep(0.05)

    def expected(self):
        return {(k, code): (n, self.cost[k] if code == "VALID" else 0) for (k, code), n in self.answers.items()}


@needs_redis
def test_item2_a_graceful_reload_and_stop_lose_no_usage(tmp_path):
    """4 workers flushing often (so an exit is likely to find a write in flight), a SIGHUP under
    load, then a SIGTERM: afterwards the table holds exactly the answers given, by key and outcome,
    with cost."""
    with fresh_database(tmp_path) as database_url:
        env = service_env(database_url, redis_url_or_none(), RATE_LIMIT_DEFAULTS="1000000 per minute",
                          USAGE_FLUSH_SECONDS="0.01")
        run_migrations(env)
        seeder, verifier, checked = seed(env, keys=60)
        try:
            with gunicorn_master(env, workers=4) as master:
                with Load(master.base, verifier, checked, threads=6) as load:
                    load.wait_for(100)
                    before = master.worker_pids()
                    after = master.reload(workers=4)  # returns once the old workers have exited
                    load.wait_for(100)
                assert not before & after
            # The service has stopped: every worker has exited, so everything must be written.
            assert load.errors == []
            assert sum(load.answers.values()) >= 200
            assert totals(seeder.app) == load.expected()
        finally:
            seeder.close()
            delete_keys(env["RATELIMIT_STORAGE_URI"], env["RATELIMIT_KEY_PREFIX"])  # the service has stopped
