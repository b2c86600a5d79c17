"""POST /v1/api-keys/verify: every code, the order of the checks, and what an answer carries.

Every test runs twice: through the WSGI fast path, and with the fast path passing everything on to
the Flask view, so both ways in give the same answers.
"""
from datetime import timedelta

import pytest

from app.fast_path import FastPath
from app.models import ApiKey, AuditEvent, KeyUsage
from app.models.types import utcnow
from tests.conftest import assert_error

URL = "/v1/api-keys/verify"


@pytest.fixture(autouse=True, params=["fast path", "flask view"])
def way_in(request, monkeypatch):
    if request.param == "flask view":
        monkeypatch.setattr(FastPath, "takes", lambda self, environ: None)
    return request.param


@pytest.fixture
def service(verifier):
    return verifier


@pytest.fixture
def owner(make):
    return make.user()


def check(client, service, key, **fields):
    response = client.post(URL, json={"key": key, **fields}, headers=service)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["meta"]


def test_a_valid_key_and_what_the_answer_carries(client, make, service, owner, secrets_seen):
    key = make.key(owner, scopes=["llm:*"], key_metadata={"team": "ml"}, quota_limit=10, quota_period="day",
                   budget_limit=100, budget_period="month", rate_limit="50/minute")
    meta = check(client, service, key.secret, scopes=["llm:gpt-4o"], ip="203.0.113.7", cost=7)
    assert meta["valid"] is True and meta["code"] == "VALID"
    assert meta["key"] == {"id": str(key.id), "owner-id": str(owner.id), "name": "test key", "scopes": ["llm:*"],
                           "metadata": {"team": "ml"}, "cost": 7, "expires-at": None}
    assert meta["rate-limit"]["limit"] == 50 and meta["rate-limit"]["remaining"] == 49
    assert meta["quota"]["remaining"] == 9 and meta["budget"]["remaining"] == 93
    body = str(meta)
    assert key.secret not in body and make.row(ApiKey, key.id)["digest"] not in body


@pytest.mark.parametrize("attributes, fields, code", [
    ({}, {"key": "lk_" + "A" * 38}, "NOT_FOUND"),                      # bad checksum
    ({}, {"key": "not-a-key"}, "NOT_FOUND"),                             # malformed
    ({"status": "revoked"}, {}, "REVOKED"),
    ({"status": "suspended"}, {}, "SUSPENDED"),
    ({"expires_at": utcnow() - timedelta(seconds=1)}, {}, "EXPIRED"),
    ({"allowed_ips": ["10.0.0.0/8"]}, {"ip": "203.0.113.7"}, "FORBIDDEN"),
    ({"allowed_ips": ["10.0.0.0/8"]}, {}, "FORBIDDEN"),                  # no address given
    ({"scopes": ["llm:gpt-4o"]}, {"scopes": ["llm:claude"]}, "INSUFFICIENT_SCOPES"),
    ({"scopes": ["llm:gpt-4o"]}, {"scopes": ["llm:*"]}, "INSUFFICIENT_SCOPES"),
])
def test_every_failure_code(client, make, service, owner, attributes, fields, code):
    key = make.key(owner, **{"scopes": ["keys:read"], **attributes})
    meta = check(client, service, **{"key": key.secret, **fields})
    missing = {"missing-scopes": fields["scopes"]} if code == "INSUFFICIENT_SCOPES" else {}
    assert meta == {"valid": False, "code": code, **missing}


def test_rate_limited_then_quota_then_budget(client, make, service, owner):
    limited = make.key(owner, rate_limit="2/minute")
    assert [check(client, service, limited.secret)["code"] for _ in range(3)] == ["VALID", "VALID", "RATE_LIMITED"]
    quota = make.key(owner, quota_limit=2, quota_period="total")
    assert [check(client, service, quota.secret)["code"] for _ in range(3)] == ["VALID", "VALID", "QUOTA_EXCEEDED"]
    budget = make.key(owner, budget_limit=10, budget_period="day", quota_limit=100, quota_period="day")
    codes = [check(client, service, budget.secret, cost=4)["code"] for _ in range(3)]
    assert codes == ["VALID", "VALID", "BUDGET_EXCEEDED"]
    # The refused request took nothing: 2 units are left, and a quota unit was given back.
    meta = check(client, service, budget.secret, cost=2)
    assert meta["code"] == "VALID" and meta["budget"]["remaining"] == 0 and meta["quota"]["remaining"] == 97


@pytest.mark.parametrize("attributes, fields, code", [
    # A revoked key from a forbidden address with a missing scope: REVOKED comes first.
    ({"status": "revoked", "allowed_ips": ["10.0.0.0/8"]}, {"ip": "203.0.113.7", "scopes": ["x:y"]}, "REVOKED"),
    ({"status": "suspended", "expires_at": utcnow() - timedelta(days=1)}, {}, "SUSPENDED"),
    ({"expires_at": utcnow() - timedelta(days=1), "allowed_ips": ["10.0.0.0/8"]}, {"ip": "203.0.113.7"}, "EXPIRED"),
    ({"allowed_ips": ["10.0.0.0/8"]}, {"ip": "203.0.113.7", "scopes": ["x:y"]}, "FORBIDDEN"),
    ({"rate_limit": "1/minute", "quota_limit": 1, "quota_period": "day"}, {"scopes": ["x:y"]}, "INSUFFICIENT_SCOPES"),
])
def test_the_first_failure_wins(client, make, service, owner, attributes, fields, code):
    key = make.key(owner, **attributes)
    assert check(client, service, key.secret, **fields)["code"] == code


def test_a_key_in_its_rotation_grace_period_is_valid_and_says_so(client, make, service, owner):
    key = make.key(owner, scopes=["keys:read", "keys:write"])
    rotated = client.post(f"/v1/api-keys/{key.id}/rotate", json={"grace-period": 60},
                          headers={"X-API-Key": key.secret})
    assert rotated.status_code == 201
    meta = check(client, service, key.secret)
    assert meta["valid"] is True and "rotation-grace-until" in meta["key"]
    new_secret = rotated.get_json()["data"]["attributes"]["secret"]
    assert "rotation-grace-until" not in check(client, service, new_secret)["key"]


@pytest.mark.parametrize("scopes, admin, status", [
    (["keys:read"], False, 403),   # a key without keys:verify
    (None, False, 403),            # a non-admin's session
    (None, True, 200),             # an admin's session
])
def test_who_may_verify(client, make, owner, scopes, admin, status):
    caller = make.user(admin=admin)
    headers = {"X-API-Key": make.key(caller, scopes=scopes).secret} if scopes else make.headers(caller)
    response = client.post(URL, json={"key": make.key(owner).secret}, headers=headers)
    assert response.status_code == status


def test_anonymous_callers_get_401(client, make, owner):
    assert_error(client.post(URL, json={"key": make.key(owner).secret}), 401)


@pytest.mark.parametrize("body, pointer", [
    ({}, "/data/attributes/key"),
    ({"key": 42}, "/data/attributes/key"),
    ({"key": "lk_x", "scopes": "llm:gpt"}, "/data/attributes/scopes"),
    ({"key": "lk_x", "scopes": ["not a scope"]}, "/data/attributes/scopes"),
    ({"key": "lk_x", "ip": "999.1.1.1"}, "/data/attributes/ip"),
    ({"key": "lk_x", "ip": 3232235777}, "/data/attributes/ip"),                # an address is a string
    ({"key": "lk_x", "cost": -1}, "/data/attributes/cost"),
    ({"key": "lk_x", "cost": "5"}, "/data/attributes/cost"),
])
def test_malformed_requests_are_422(client, service, body, pointer):
    assert_error(client.post(URL, json=body, headers=service), 422, pointer=pointer)


def test_the_key_never_travels_in_the_url(client, service, make, owner):
    key = make.key(owner)
    assert_error(client.post(f"{URL}?key={key.secret}", json={}, headers=service), 400, code="CREDENTIAL_IN_QUERY")


def test_verification_counts_usage_and_writes_nothing_until_the_flush(app, client, make, service, owner):
    key = make.key(owner, scopes=["llm:*"])
    check(client, service, key.secret, cost=3)
    check(client, service, key.secret, cost=2)
    check(client, service, key.secret, scopes=["rag:search"])
    with app.app_context():
        from app.extensions import db

        assert db.session.query(KeyUsage).count() == 0
        assert make.row(ApiKey, key.id)["last_used_at"] is None
        assert db.session.query(AuditEvent).count() == 0
    app.extensions["latchkey_usage"].flush()
    with app.app_context():
        rows = {(row.outcome, row.count, row.cost) for row in db.session.query(KeyUsage).filter_by(key_id=key.id)}
    assert rows == {("VALID", 2, 5), ("INSUFFICIENT_SCOPES", 1, 0)}
    assert make.row(ApiKey, key.id)["last_used_at"] is not None


def test_requests_and_verifications_share_the_keys_rate_limit(client, make, service, owner):
    key = make.key(owner, rate_limit="3/minute")
    assert [client.get("/v1/api-keys", headers={"X-API-Key": key.secret}).status_code for _ in range(2)] == [200, 200]
    meta = check(client, service, key.secret)
    assert meta["code"] == "VALID" and meta["rate-limit"]["remaining"] == 0
    assert check(client, service, key.secret)["code"] == "RATE_LIMITED"
    assert client.get("/v1/api-keys", headers={"X-API-Key": key.secret}).status_code == 429


def test_the_verifiers_buckets_are_the_ones_flask_limiter_counts_the_keys_requests_in(app, client, make):
    """The verifier counts a key's own rate limit in flask-limiter's buckets, whose names it builds
    itself (admission.key_buckets): an upgrade of flask-limiter that names them otherwise fails here."""
    from app.extensions import limiter
    from app.services.admission import key_buckets

    key = make.key(make.user(), rate_limit="5/minute;100/hour")
    reported = []

    @app.after_request
    def report(response):
        reported.extend(limit.key for limit in limiter.current_limits)
        return response

    assert client.get("/v1/scopes", headers={"X-API-Key": key.secret}).status_code == 200
    with app.app_context():
        names = {bucket.name for bucket in key_buckets(app.config["RATELIMIT_KEY_PREFIX"], key.id, "5/minute;100/hour")}
    assert len(names) == 2 and names <= set(reported), (names, reported)


@pytest.mark.parametrize("config_overrides", [{"RATE_LIMIT_AUTH_FAILURES": "10 per minute; 2 per hour"}])
def test_an_address_over_its_failure_limit_is_told_to_wait_for_the_longest_window_it_is_over(client, make, owner):
    """Over the hourly limit only: an hour, not the minute of the first limit listed (a client back
    in a minute would be refused again)."""
    checked = {"key": make.key(owner).secret}
    for _ in range(2):
        assert_error(client.post(URL, json=checked, headers={"X-API-Key": "lk_nope"}), 401)
    refused = client.post(URL, json=checked, headers={"X-API-Key": "lk_nope"})
    assert_error(refused, 429, code="RATE_LIMITED")
    assert refused.headers["Retry-After"] == "3600"
