"""Hung backends (issue 10, item 4) and what flask-limiter may swallow (item 8, the limiter half).

A Redis or a PostgreSQL that stops answering (SIGSTOP: connections stay open, nothing answers, as
with a frozen host) must not stall the service: once Redis has failed one call (after at most
REDIS_SOCKET_TIMEOUT), its circuit breaker makes every Redis call fail at once, the storage error
policy applies as before (`open` serves, `closed` answers 503 LIMITS_UNAVAILABLE), /readyz says so
at once, and limits apply again within REDIS_RETRY_SECONDS of a SIGCONT. A hung database costs a
request at most its timeouts (the round-trip deadline, the connect timeout), not forever.

Only private servers are frozen: a redis-server and a PostgreSQL cluster of the test's own, on free
ports, always thawed and stopped afterwards. Tests that need them are skipped when the binaries are
missing, except in `.ci/run`'s PostgreSQL + Redis pass, where that is a failure.
"""
import logging
import shutil
import threading
import time
import types
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from app import create_app
from app.api.helpers import ratelimit
from app.extensions import db
from config import TestingConfig
from tests.helpers import Factory, assert_error
from tests.servers import (
    PausableRedis,
    PrivatePostgres,
    backends_pass,
    fresh_database,
    gunicorn,
    postgres_binaries,
    run_migrations,
    service_env,
)

LIMIT = 5
URL = "/v1/scopes"
RETRY = TestingConfig.REDIS_RETRY_SECONDS  # 1 s
SOCKET_TIMEOUT = TestingConfig.REDIS_SOCKET_TIMEOUT  # 0.1 s
STATEMENT_MS = 1000  # the private PostgreSQL's statement timeout here (5000 by default)
DEADLINE = STATEMENT_MS / 1000 + 0.5  # a round trip's client-side deadline (+ breaker.DEADLINE_MARGIN)
CONNECT = TestingConfig.DATABASE_CONNECT_TIMEOUT  # 2 s (libpq's least)


def need(present, what):
    if present:
        return
    if backends_pass():
        pytest.fail(f"{what} must be installed for the PostgreSQL + Redis pass (fault tests)")
    pytest.skip(f"{what} is not installed")


@pytest.fixture
def private_redis(tmp_path):
    need(shutil.which("redis-server"), "redis-server")
    server = PausableRedis(tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()  # SIGCONT first


@pytest.fixture
def config_overrides(request):
    """A test that uses `private_redis` gets an app on it, with the test's `policy`."""
    if "private_redis" not in request.fixturenames:
        return {}
    return {"RATELIMIT_STORAGE_URI": request.getfixturevalue("private_redis").url,
            "RATELIMIT_ON_STORAGE_ERROR": request.getfixturevalue("policy"),
            "RATE_LIMIT_DEFAULTS": f"{LIMIT} per minute"}


def answer(response):
    """(status, error code or None) of a test client or requests response."""
    status = response.status_code
    if status < 400:
        return status, None
    document = response.get_json() if hasattr(response, "get_json") else response.json()
    return status, document["errors"][0].get("code")


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def timed_series(call, count, budget):
    """Call `count` times in a row, giving up once `budget` seconds are spent; (answers, seconds)."""
    answers, started = [], time.monotonic()
    for _ in range(count):
        answers.append(answer(call()))
        if time.monotonic() - started > budget:
            break
    return answers, time.monotonic() - started


def expected_while_down(policy):
    return (200, None) if policy == "open" else (503, "LIMITS_UNAVAILABLE")


# --- the breaker itself ---------------------------------------------------------------------------


def test_the_breaker_fails_calls_at_once_then_lets_one_trial_through(monkeypatch):
    from app.services import breaker as breakers
    from app.services.breaker import Breaker, BreakerOpen

    clock = [100.0]
    monkeypatch.setattr(breakers, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    guard, calls = Breaker(retry_seconds=1.0), []

    def redis_call(outcome):
        calls.append(outcome)
        if outcome == "hung":
            clock[0] += 0.1  # REDIS_SOCKET_TIMEOUT
            raise RedisTimeoutError("Timeout reading from socket")
        if outcome == "refused":
            raise RedisConnectionError("Connection refused")  # at once
        return outcome

    assert guard.call(redis_call, "up") == "up" and not guard.is_open
    with pytest.raises(RedisConnectionError):
        guard.call(redis_call, "refused")
    assert not guard.is_open  # a quick failure: trying again costs nothing
    with pytest.raises(RedisTimeoutError):
        guard.call(redis_call, "hung")
    assert guard.is_open and guard.openings == 1
    assert guard.report_once() and not guard.report_once()  # one warning per REDIS_RETRY_SECONDS
    clock[0] += 0.99
    with pytest.raises(BreakerOpen):
        guard.call(redis_call, "up")  # not called
    assert calls == ["up", "refused", "hung"]

    clock[0] += 0.02  # half-open: one trial; the others still fail at once while it runs

    def trial():
        with pytest.raises(BreakerOpen):
            guard.call(redis_call, "up")
        return "trial"

    assert guard.call(trial) == "trial"
    assert not guard.is_open and calls == ["up", "refused", "hung"]

    with pytest.raises(RedisTimeoutError):
        guard.call(redis_call, "hung")
    clock[0] += 1.01
    with pytest.raises(RedisTimeoutError):
        guard.call(redis_call, "hung")  # the trial failed: open for another second
    assert guard.is_open and guard.openings == 2
    with pytest.raises(BreakerOpen):
        guard.call(redis_call, "up")
    clock[0] += 1.01
    assert guard.call(redis_call, "up") == "up" and not guard.is_open
    assert guard.report_once()


# --- flask-limiter swallows storage errors only (item 8) ------------------------------------------


@pytest.mark.parametrize("config_overrides", [{"RATELIMIT_ON_STORAGE_ERROR": "open"}])
def test_a_bug_in_a_limiter_key_function_is_a_500_not_a_request_without_limits(client, monkeypatch, caplog):
    def broken():
        raise RuntimeError("a bug in the key function")

    monkeypatch.setattr(ratelimit, "client_ip", broken)  # called by the limiter's key function only
    assert_error(client.get(URL), 500)
    assert not [r for r in caplog.records if "Swallowing" in r.getMessage()]


@pytest.mark.parametrize("config_overrides", [{"RATELIMIT_ON_STORAGE_ERROR": "closed"}])
def test_a_storage_error_after_the_request_was_served_only_leaves_the_headers_out(client, app, monkeypatch):
    with app.app_context():
        strategy = app.extensions["latchkey_limiter"].limiter

    def unreachable(*args, **kwargs):
        raise RedisConnectionError("down since the hit")

    monkeypatch.setattr(strategy, "get_window_stats", unreachable)
    response = client.get(URL)
    assert response.status_code == 200 and "X-RateLimit-Limit" not in response.headers


# --- a hung Redis, in process ---------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["open", "closed"])
def test_a_hung_redis_costs_milliseconds_once_the_breaker_is_open(client, private_redis, policy, caplog):
    assert [answer(client.get(URL)) for _ in range(LIMIT + 1)] == [(200, None)] * LIMIT + [(429, "RATE_LIMITED")]

    private_redis.pause()
    first, took = timed(lambda: client.get(URL))
    assert took < SOCKET_TIMEOUT + 0.4, f"the first call to a hung Redis took {took:.2f} s"
    assert answer(first) == expected_while_down(policy)

    logged = len(caplog.records)
    answers, took = timed_series(lambda: client.get(URL), 50, budget=1.0)
    assert took < 1.0, f"50 requests took {took:.2f} s"
    assert answers == [expected_while_down(policy)] * 50
    if policy == "open":  # warned once, when the breaker opened, not per request
        assert [r.getMessage() for r in caplog.records[logged:] if r.levelno >= logging.WARNING] == []

    ready, took = timed(lambda: client.get("/readyz"))
    assert took < 0.25 and ready.status_code == 503
    assert ready.get_json()["checks"] == {"database": True, "rate_limit_storage": False}

    private_redis.resume()
    resumed = time.monotonic()
    while answer(client.get(URL)) != (429, "RATE_LIMITED"):  # the bucket still holds its hits
        assert time.monotonic() - resumed < RETRY + 0.3, "limits did not apply again within REDIS_RETRY_SECONDS"
        time.sleep(0.02)
    assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize("policy", ["open"])
def test_a_redis_that_is_down_warns_once_and_limits_apply_again_as_soon_as_it_is_back(client, private_redis,
                                                                                    policy, caplog):
    assert [answer(client.get(URL)) for _ in range(LIMIT)] == [(200, None)] * LIMIT
    private_redis.stop()  # refused connections: quick failures, so no breaker opens
    logged = len(caplog.records)
    answers, took = timed_series(lambda: client.get(URL), 50, budget=1.0)
    assert answers == [(200, None)] * 50 and took < 1.0, f"50 requests took {took:.2f} s"
    warnings = [r.getMessage() for r in caplog.records[logged:] if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "fail open" in warnings[0], warnings  # not one per request
    private_redis.start()  # empty: counting starts again, at once
    assert [answer(client.get(URL)) for _ in range(LIMIT + 1)] == [(200, None)] * LIMIT + [(429, "RATE_LIMITED")]


@pytest.mark.parametrize("policy", ["open", "closed"])
def test_every_redis_call_fails_at_once_while_the_breaker_is_open(client, make, private_redis, policy):
    owner, admin = make.user(), make.user(admin=True)
    quota_key = make.key(owner, quota_limit=100, quota_period="day", rate_limit="50/minute")
    budget_key = make.key(owner, budget_limit=1000, budget_period="day")
    service = {"X-API-Key": make.key(admin, scopes=["keys:verify"]).secret}
    owner_headers, admin_headers = make.headers(owner), make.headers(admin)
    assert client.get("/v1/api-keys", headers={"X-API-Key": quota_key.secret}).status_code == 200

    private_redis.pause()
    client.get(URL)  # the first call to reach Redis fails after REDIS_SOCKET_TIMEOUT: the breaker opens
    down = expected_while_down(policy)
    calls = {
        # flask-limiter's hits (defaults, the key's own limit), then the quota check
        "a request with a key": (lambda: client.get("/v1/api-keys", headers={"X-API-Key": quota_key.secret}), down),
        # the WSGI fast path: allowances.admit's Lua round trip
        "a verification": (lambda: client.post("/v1/api-keys/verify", json={"key": budget_key.secret},
                                               headers=service), down),
        # allowance_state: the quota's `used` cannot be read, the document is served without it
        "the key resource": (lambda: client.get(f"/v1/api-keys/{quota_key.id}", headers=owner_headers), down),
        # a reset cannot be done without Redis, whatever the policy
        "a budget reset": (lambda: client.post(f"/v1/api-keys/{budget_key.id}/budget/reset", headers=admin_headers),
                           (503, "LIMITS_UNAVAILABLE")),
    }
    for what, (call, expected) in calls.items():
        # The fastest of three: a call that waited for Redis would take SOCKET_TIMEOUT every time,
        # while a loaded machine may stall any one request (its database work) past it.
        response, took = min((timed(call) for _ in range(3)), key=lambda timing: timing[1])
        assert took < SOCKET_TIMEOUT, f"{what} took {took:.3f} s"
        assert answer(response) == expected, what
        if what == "a verification" and policy == "open":
            assert response.get_json()["meta"]["code"] == "VALID"
        if what == "the key resource" and policy == "open":
            quota = response.get_json()["data"]["attributes"]["quota"]
            assert quota["used"] is None and quota["remaining"] is None


# --- a hung Redis under gunicorn (2 workers, a breaker each) ---------------------------------------


def fire(url, count, timeout):
    """GET `url` `count` times from 8 threads; a Counter of answers (or "timeout"); total seconds."""
    def one(_):
        try:
            return answer(requests.get(url, timeout=timeout))
        except requests.Timeout:
            return "timeout"

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        result = Counter(pool.map(one, range(count)))
    return result, time.monotonic() - started


@pytest.mark.parametrize("policy", ["open", "closed"])
def test_a_hung_redis_under_gunicorn_then_recovery(tmp_path, private_redis, policy):
    with fresh_database(tmp_path) as database_url:
        env = service_env(database_url, private_redis.url, RATE_LIMIT_DEFAULTS=f"{LIMIT} per minute",
                          RATELIMIT_ON_STORAGE_ERROR=policy)
        run_migrations(env)
        with gunicorn(env, workers=2) as base:
            url = f"{base}{URL}"
            assert fire(url, 8, timeout=10)[0] == {(200, None): LIMIT, (429, "RATE_LIMITED"): 8 - LIMIT}

            private_redis.pause()
            during, took = fire(url, 50, timeout=2)
            assert during == {expected_while_down(policy): 50}
            assert took < 1.5, f"50 requests took {took:.2f} s"
            ready, took = timed(lambda: requests.get(f"{base}/readyz", timeout=5))
            assert ready.status_code == 503 and ready.json()["checks"]["rate_limit_storage"] is False
            assert took < 0.5

            private_redis.resume()
            time.sleep(RETRY + 0.2)  # each worker's breaker lets a trial through: it succeeds
            assert fire(url, 8, timeout=10)[0] == {(429, "RATE_LIMITED"): 8}
            assert requests.get(f"{base}/readyz", timeout=5).status_code == 200


# --- a hung PostgreSQL ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_postgres():
    need(postgres_binaries() is not None, "the PostgreSQL server (initdb, postgres)")
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.stop()  # SIGCONT first


@pytest.fixture
def pg_app(private_postgres):
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=private_postgres.url, RATELIMIT_STORAGE_URI="memory://",
                     RATELIMIT_KEY_PREFIX=f"lkfault-{uuid.uuid4().hex[:8]}", RATE_LIMIT_DEFAULTS="100000 per hour",
                     DATABASE_STATEMENT_TIMEOUT_MS=STATEMENT_MS)
    with app.app_context():
        db.create_all()
    try:
        yield app
    finally:
        private_postgres.resume()
        with app.app_context():
            db.engine.dispose()


def within(seconds, call):
    """Run `call` on a thread; return (its result, seconds), or (None, seconds) if still running
    (then the thread is left to finish once the server is resumed). What it raised is raised."""
    outcome = []

    def run():
        try:
            outcome.append((call(), None))
        except BaseException as error:  # noqa: BLE001  (raised again below)
            outcome.append((None, error))

    started = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    took = time.monotonic() - started
    if not outcome:
        return None, took
    result, error = outcome[0]
    if error is not None:
        raise error
    return result, took


@pytest.fixture
def signed_in(pg_app, secrets_seen):
    """(test client, the URL of a user, that user's headers), the pool warmed by one request."""
    make = Factory(pg_app, secrets_seen)
    user = make.user()
    client, url, headers = pg_app.test_client(), f"/v1/users/{user.id}", make.headers(user)
    assert client.get(url, headers=headers).status_code == 200
    return client, url, headers


def test_the_server_cancels_a_statement_after_the_statement_timeout(pg_app):
    with pg_app.app_context():
        started = time.monotonic()
        with pytest.raises(OperationalError, match="statement timeout"):
            db.session.execute(text("SELECT pg_sleep(3)"))
        assert time.monotonic() - started < STATEMENT_MS / 1000 + 0.5
        db.session.rollback()
        assert db.session.execute(text("SELECT 1")).scalar() == 1  # the connection is still good


def test_a_round_trip_to_a_hung_database_gives_up_after_the_deadline(pg_app, private_postgres):
    def statement():
        with pg_app.app_context():
            db.session.execute(text("SELECT 1"))  # a transaction is open: no pre-ping before the next one
            private_postgres.pause()
            started = time.monotonic()
            try:
                db.session.execute(text("SELECT 1"))
            except OperationalError as error:
                db.session.rollback()
                return error, time.monotonic() - started
            return None, time.monotonic() - started

    try:
        outcome, _ = within(15, statement)
    finally:
        private_postgres.resume()
    assert outcome is not None, "the statement still waits for the hung database after 15 s"
    error, took = outcome
    assert error is not None and error.connection_invalidated  # dropped from the pool
    assert STATEMENT_MS / 1000 <= took < DEADLINE + 0.5, f"{took:.2f} s"


def test_a_hung_database_costs_a_request_at_most_its_timeouts(signed_in, private_postgres):
    client, url, headers = signed_in
    private_postgres.pause()
    try:
        # A pooled connection: its pre-ping gives up (after the connect timeout or the round-trip
        # deadline, the shorter), then the pool's new connection (after the connect timeout).
        response, took = within(15, lambda: client.get(url, headers=headers))
        assert response is not None, "the request still waits for the hung database after 15 s"
        assert took < min(CONNECT, DEADLINE) + CONNECT + 0.75, f"{took:.2f} s"
        assert response.status_code >= 500, response.get_data(as_text=True)
        # No pooled connection left: at most the connect timeout.
        response, took = within(15, lambda: client.get(url, headers=headers))
        assert response is not None and took < CONNECT + 0.75, f"{took:.2f} s"
        ready, took = within(15, lambda: client.get("/readyz"))
        assert ready is not None and took < 0.5, f"/readyz took {took:.2f} s"
        assert ready.status_code == 503 and ready.get_json()["checks"] == {"database": False,
                                                                           "rate_limit_storage": True}
    finally:
        private_postgres.resume()
    response, took = within(15, lambda: client.get(url, headers=headers))
    assert response is not None and response.status_code == 200, f"no recovery after SIGCONT ({took:.2f} s)"
    ready, _ = within(15, lambda: client.get("/readyz"))
    assert ready.status_code == 200, ready.get_json()


def test_a_hung_database_is_a_503_database_unavailable(signed_in, private_postgres):
    client, url, headers = signed_in
    private_postgres.pause()
    try:
        response, _ = within(15, lambda: client.get(url, headers=headers))
    finally:
        private_postgres.resume()
    assert response is not None, "the request still waits for the hung database after 15 s"
    assert_error(response, 503, code="DATABASE_UNAVAILABLE")
    assert response.headers.get("Retry-After")
