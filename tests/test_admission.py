"""The key checks and their counters below HTTP: verifier.check_key / verify, and allowances (the
admission of a request against a key's buckets, quota and budget) on memory://. The HTTP answers
are in tests/test_verify.py; the Redis counters and their leases in tests/test_leases.py."""
import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from app import create_app
from app.services import allowances, lifecycle, verifier
from app.services.admission import Admission, Allowance, Bucket, Charge
from app.services.allowances import MemoryCounters
from app.services.redis_counters import RedisCounters
from app.services.verifier import Outcome
from config import TestingConfig


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def record_of(secret):
    outcome, record = verifier.check_key(secret, None)
    assert outcome is Outcome.VALID
    return record


def test_a_rotated_secret_stops_at_the_exact_end_of_its_grace(ctx, make):
    old = lifecycle.new_secret_fields("lk")
    until = datetime(2030, 1, 1, tzinfo=UTC)
    make.key(make.user(), previous_digest=old["digest"], previous_valid_until=until)
    secret = old["plaintext_secret"]
    assert verifier.check_key(secret, None, now=until - timedelta(microseconds=1))[0] is Outcome.VALID
    assert verifier.check_key(secret, None, now=until) == (Outcome.NOT_FOUND, None)


def test_a_refused_verdict_names_its_key(ctx, make):
    key = make.key(make.user(), status="revoked")
    verdict = verifier.verify(key.secret)
    assert verdict.outcome is Outcome.REVOKED and verdict.record.id == key.id


def test_verify_checks_the_address_it_is_given(ctx, make):
    key = make.key(make.user(), allowed_ips=["10.0.0.0/8"])
    assert verifier.verify(key.secret, (), "10.1.2.3").outcome is Outcome.VALID
    assert verifier.verify(key.secret, (), "192.0.2.1").outcome is Outcome.FORBIDDEN


def test_an_admins_key_may_be_asked_about_admin_only_scopes(ctx, make):
    key = make.key(make.user(admin=True), scopes=["keys:verify"])
    assert verifier.verify(key.secret, ["keys:verify"]).outcome is Outcome.VALID
    demoted = make.key(make.user(), scopes=["keys:verify"])
    assert verifier.verify(demoted.secret, ["keys:verify"]).missing_scopes == ("keys:verify",)


def test_a_verification_costs_one_unless_told(ctx, make):
    key = make.key(make.user(), budget_limit=10, budget_period="day")
    assert verifier.verify(key.secret).budget["used"] == 1
    assert verifier.verify(key.secret, cost=3).budget["used"] == 4


def test_the_tightest_window_is_reported(ctx, make):
    key = make.key(make.user(), rate_limit="100/minute;3/hour")
    verdict = verifier.verify(key.secret)
    assert verdict.rate_limit == {"limit": 3, "remaining": 2, "window": 3600}


@pytest.mark.parametrize("config_overrides", [{"RATELIMIT_ON_STORAGE_ERROR": "open"}])
def test_an_unreachable_storage_fails_open_with_a_warning(ctx, make, monkeypatch, caplog):
    def unreachable(*args):
        raise RedisConnectionError("down")

    monkeypatch.setattr(allowances, "admit_key", unreachable)
    key = make.key(make.user(), budget_limit=10, budget_period="day")
    with caplog.at_level(logging.WARNING):
        verdict = verifier.verify(key.secret)
    assert verdict.outcome is Outcome.VALID and verdict.record.id == key.id and verdict.budget is None
    assert any("rate limit, quota and budget checks skipped (fail open)" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("config_overrides", [{"RATELIMIT_ON_STORAGE_ERROR": "closed"}])
def test_an_unreachable_storage_is_an_error_when_closed(ctx, make, monkeypatch):
    def unreachable(*args):
        raise RedisConnectionError("down")

    monkeypatch.setattr(allowances, "admit_key", unreachable)
    with pytest.raises(RedisConnectionError):
        verifier.verify(make.key(make.user(), budget_limit=10, budget_period="day").secret)


def test_a_key_document_says_when_its_usage_is_unknown(ctx, make, monkeypatch, caplog):
    def unreachable(name):
        raise RedisConnectionError("down")

    monkeypatch.setattr(ctx.extensions["latchkey_counters"], "get", unreachable)
    key = type("Key", (), {"id": 1, "quota_limit": 5, "quota_period": "day"})
    with caplog.at_level(logging.WARNING):
        state = allowances.allowance_state(key, "quota")
    assert state["used"] is None and state["remaining"] is None and state["limit"] == 5
    assert state["resets-at"].endswith("+00:00")
    assert any("quota usage left out" in r.getMessage() for r in caplog.records)


def test_the_counters_follow_the_limiter_storage(app):
    assert type(app.extensions["latchkey_counters"]) is (
        RedisCounters if app.config["RATELIMIT_STORAGE_URI"].startswith("redis") else MemoryCounters)
    elsewhere = create_app(TestingConfig, RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0", RATELIMIT_KEY_PREFIX="x-")
    counters = elsewhere.extensions["latchkey_counters"]
    assert type(counters) is RedisCounters and counters.namespace == "x-"  # nothing connects until used


def test_buckets_and_allowances_are_all_counted(ctx):
    now = datetime.now(UTC)
    bucket = Bucket(f"test-bucket-{time.time_ns()}", 5, 60)
    quota, budget = Allowance("quota", 10**9, 2, "day"), Allowance("budget", 10**9, 10, "total")
    first = allowances.admit([bucket], [(quota, 1), (budget, 4)], now)
    assert first.admitted and first.used == ((bucket, 1), (quota, 1), (budget, 4))
    allowances.admit([bucket], [(quota, 1), (budget, 4)], now)
    refused = allowances.admit([bucket], [(quota, 1), (budget, 4)], now)
    assert refused.refused == quota and refused.used == ((bucket, 3), (quota, 2), (budget, 8))  # nothing added
    assert allowances.used(budget, now) == 8
    allowances.reset(budget, now)
    assert allowances.used(budget, now) == 0
    assert allowances.admit([], [], now) == Admission(None)


def test_a_key_is_charged_on_each_of_its_limits(ctx, make):
    now = datetime.now(UTC)
    key = make.key(make.user(), rate_limit="5/minute", quota_limit=3, quota_period="day",
                   budget_limit=100, budget_period="month")
    admission = allowances.admit_key(record_of(key.secret), 7, now)
    kinds = [(type(limit).__name__, getattr(limit, "period", None), count) for limit, count in admission.used]
    assert kinds == [("Bucket", None, 1), ("Allowance", "day", 1), ("Allowance", "month", 7)]
    budget_only = make.key(make.user(), budget_limit=100, budget_period="day")
    assert [count for _, count in allowances.admit_key(record_of(budget_only.secret), 7, now).used] == [7]
    plain = make.key(make.user())
    assert allowances.admit_key(record_of(plain.secret), 7, now) == Admission(None)


def test_memory_counters_forget_what_expired():
    counters = MemoryCounters(storage=None)
    assert counters.namespace == ""
    counters._values["gone"] = (5, time.time() - 1)
    counters._values["kept"] = (5, time.time() + 60)
    assert counters.get("gone") == 0 and "gone" not in counters._values
    assert counters.get("kept") == 5
    counters.clear("never there")
    charge = Charge(Allowance("quota", 1, 10, "day"), "kept", 1, time.time() + 60)
    assert counters.admit([charge]).used == ((charge.limit, 6),)


def test_allowances_of_a_key(ctx, make):
    record = record_of(make.key(make.user(), quota_limit=3, quota_period="day",
                                budget_limit=9, budget_period="total").secret)
    assert allowances.allowances_of(record) == (Allowance("quota", record.id, 3, "day"),
                                                Allowance("budget", record.id, 9, "total"))
