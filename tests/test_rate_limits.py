"""Who the limiter counts, the per-key limit and quota, headers, and start-up validation.
(Exactness across processes and Redis failures: test_limits_processes.py.)"""
import pytest

from app import create_app
from config import TestingConfig
from tests.helpers import JSONAPI, assert_error, resource

LIMIT = 3


@pytest.fixture
def config_overrides():
    return {"RATE_LIMIT_DEFAULTS": f"{LIMIT} per minute"}


def burst(client, url, count, **kwargs):
    return [client.get(url, **kwargs).status_code for _ in range(count)]


def test_jwt_identity_has_its_own_bucket(client, make):
    ann, bob = make.user(), make.user()
    ann_headers = make.headers(ann)
    assert burst(client, f"/v1/users/{ann.id}", LIMIT + 1, headers=ann_headers) == [200] * LIMIT + [429]
    # Another user from the same address, and a second token of the same user's, are counted apart/together.
    assert client.get(f"/v1/users/{bob.id}", headers=make.headers(bob)).status_code == 200
    assert client.get(f"/v1/users/{ann.id}", headers=make.headers(ann)).status_code == 429


def test_key_identity_has_its_own_bucket(client, make):
    user = make.user()
    key = make.key(user)
    assert burst(client, "/v1/api-keys", LIMIT + 1, headers={"X-API-Key": key.secret}) == [200] * LIMIT + [429]
    assert client.get("/v1/api-keys", headers=make.headers(user)).status_code == 200  # the JWT's bucket


def test_authenticated_requests_are_never_counted_by_ip(client, make):
    user = make.user()
    assert burst(client, "/v1/scopes", LIMIT, headers=make.headers(user)) == [200] * LIMIT
    assert burst(client, "/v1/scopes", LIMIT + 1) == [200] * LIMIT + [429]


def test_a_bad_credential_is_counted_by_ip(client):
    bad = {"Authorization": "Bearer not-a-token"}
    assert burst(client, "/v1/api-keys", LIMIT, headers=bad) == [401] * LIMIT
    assert client.get("/v1/api-keys").status_code == 429  # anonymous, same address: same bucket


def test_forged_forwarded_for_does_not_move_the_bucket_without_trusted_proxies(client):
    statuses = [client.get("/v1/scopes", headers={"X-Forwarded-For": f"10.0.0.{n}"}).status_code
                for n in range(LIMIT + 1)]
    assert statuses == [200] * LIMIT + [429]


@pytest.mark.parametrize("config_overrides", [{"RATE_LIMIT_DEFAULTS": f"{LIMIT} per minute", "TRUSTED_PROXIES": 1}])
def test_one_trusted_proxy_uses_the_last_hop(client):
    first = {"X-Forwarded-For": "203.0.113.9, 198.51.100.1"}
    assert burst(client, "/v1/scopes", LIMIT + 1, headers=first) == [200] * LIMIT + [429]
    # Same forged first entry, another last hop: another client, another bucket.
    assert client.get("/v1/scopes", headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.2"}).status_code == 200


def test_429_is_a_json_api_document_with_rate_limit_headers(client):
    burst(client, "/v1/scopes", LIMIT)
    response = client.get("/v1/scopes")
    assert_error(response, 429, code="RATE_LIMITED")
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["X-RateLimit-Limit"] == str(LIMIT)
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert int(response.headers["X-RateLimit-Reset"]) > 0


def test_limited_responses_carry_headers(client):
    response = client.get("/v1/scopes")
    assert response.headers["X-RateLimit-Limit"] == str(LIMIT)
    assert response.headers["X-RateLimit-Remaining"] == str(LIMIT - 1)


@pytest.mark.parametrize("config_overrides", [{}])
def test_a_keys_own_limit_applies_on_top_of_the_defaults(client, make):
    key = make.key(make.user(), rate_limit="2/minute")
    statuses = burst(client, "/v1/api-keys", 3, headers={"X-API-Key": key.secret})
    assert statuses == [200, 200, 429]
    # Across endpoints: the key's limit is one bucket for the whole API.
    assert client.get("/v1/scopes", headers={"X-API-Key": key.secret}).status_code == 429


@pytest.mark.parametrize("config_overrides", [{}])
def test_quota_is_counted_and_shown(client, make):
    user = make.user()
    key = make.key(user, quota_limit=2, quota_period="month")
    headers = {"X-API-Key": key.secret}
    first = client.get("/v1/api-keys", headers=headers)
    assert first.headers["X-Quota-Limit"] == "2" and first.headers["X-Quota-Remaining"] == "1"
    assert int(first.headers["X-Quota-Reset"]) > 0
    quota = first.get_json()["data"][0]["attributes"]["quota"]
    assert quota["limit"] == 2 and quota["period"] == "month" and quota["used"] == 1 and quota["remaining"] == 1
    assert client.get("/v1/api-keys", headers=headers).status_code == 200
    exhausted = client.get("/v1/api-keys", headers=headers)
    assert_error(exhausted, 429, code="QUOTA_EXCEEDED")
    assert exhausted.headers["X-Quota-Remaining"] == "0"
    # The JWT session of the owner is not bound by the key's quota.
    assert client.get(f"/v1/api-keys/{key.id}", headers=make.headers(user)).status_code == 200


@pytest.mark.parametrize("config_overrides", [{}])
def test_only_admins_reset_a_quota(client, make):
    user, admin = make.user(), make.user(admin=True)
    key = make.key(user, quota_limit=1, quota_period="total")
    headers = {"X-API-Key": key.secret}
    assert client.get("/v1/api-keys", headers=headers).status_code == 200
    assert client.get("/v1/api-keys", headers=headers).status_code == 429
    assert_error(client.post(f"/v1/api-keys/{key.id}/quota/reset", headers=make.headers(user)), 403)
    reset = client.post(f"/v1/api-keys/{key.id}/quota/reset", headers=make.headers(admin))
    assert reset.status_code == 200
    assert reset.get_json()["data"]["attributes"]["quota"]["remaining"] == 1
    assert client.get("/v1/api-keys", headers=headers).status_code == 200
    assert_error(client.post(f"/v1/api-keys/{key.id}/budget/reset", headers=make.headers(admin)), 409)


@pytest.mark.parametrize("config_overrides", [{}])
def test_admin_raises_a_quota_with_patch(client, make):
    user, admin = make.user(), make.user(admin=True)
    key = make.key(user, quota_limit=1, quota_period="day")
    headers = {"X-API-Key": key.secret}
    client.get("/v1/api-keys", headers=headers)
    assert client.get("/v1/api-keys", headers=headers).status_code == 429
    patch = client.patch(f"/v1/api-keys/{key.id}", headers={**make.headers(admin), "Content-Type": JSONAPI},
                         json=resource("api-keys", {"quota": {"limit": 5, "period": "day"}}, id_=key.id))
    assert patch.status_code == 200, patch.get_json()
    assert client.get("/v1/api-keys", headers=headers).status_code == 200


@pytest.mark.parametrize("name, value", [
    ("RATE_LIMIT_DEFAULTS", "lots per minute"),
    ("RATE_LIMIT_LOGIN", "10 per fortnight"),
    ("RATELIMIT_ON_STORAGE_ERROR", "sometimes"),
])
def test_a_bad_limit_setting_stops_the_service_with_a_clear_message(name, value):
    with pytest.raises(RuntimeError, match=name):
        create_app(TestingConfig, **{name: value})


def test_memory_storage_warns_at_start(caplog):
    create_app(TestingConfig, RATELIMIT_STORAGE_URI="memory://")
    assert any("in memory" in record.getMessage() for record in caplog.records)
