"""The verification fast path answers the common request itself and passes everything else on to the
Flask view, which then sees the request whole. (tests/test_verify.py runs every answer both ways.)"""
import json

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from app.api.verify import VerifyFastPath
from app.services import allowances
from tests.conftest import assert_error

URL = "/v1/api-keys/verify"


@pytest.fixture
def passed_on(app, monkeypatch):
    """Count the requests the fast path passes on to Flask."""
    calls = []
    layer = app.wsgi_app
    while not isinstance(layer, VerifyFastPath):
        layer = layer.app  # ProxyFix
    flask_app = layer.wsgi_app

    def counted(environ, start_response):
        calls.append(1)
        return flask_app(environ, start_response)

    monkeypatch.setattr(layer, "wsgi_app", counted)
    return calls


@pytest.fixture
def service(make):
    return {"X-API-Key": make.key(make.user(admin=True), scopes=["keys:verify"]).secret}


@pytest.fixture
def key(make):
    return make.key(make.user(), scopes=["llm:*"])


def test_the_common_request_never_reaches_flask(client, service, key, passed_on):
    bearer = {"Authorization": f"Bearer {service['X-API-Key']}"}
    for headers in (service, bearer):
        response = client.post(URL, json={"key": key.secret, "scopes": ["llm:gpt-4o"]}, headers=headers)
        assert response.status_code == 200 and response.get_json()["meta"]["code"] == "VALID"
    assert passed_on == []


def test_both_ways_in_give_the_same_bytes_and_headers(client, service, key, monkeypatch, passed_on):
    fast = client.post(URL, json={"key": key.secret, "ip": "203.0.113.7"}, headers=service)
    monkeypatch.setattr(VerifyFastPath, "_accept", staticmethod(lambda environ, body: None))
    slow = client.post(URL, json={"key": key.secret, "ip": "203.0.113.7"}, headers=service)
    assert passed_on == [1]
    assert fast.get_data() == slow.get_data()
    assert sorted(fast.headers.items()) == sorted(slow.headers.items())


@pytest.mark.parametrize("change, status", [
    (lambda r, s: r.update(query_string={"key": "x"}), 400),                         # credentials in the URL
    (lambda r, s: r.update(data="{not json", content_type="application/json", json=None), 400),
    (lambda r, s: r.update(data=json.dumps(r.pop("json")), content_type="text/plain"), 415),
    (lambda r, s: r["json"].update(cost=-1), 422),
    (lambda r, s: r["json"].update(key=7), 422),
    (lambda r, s: r.update(headers={}), 401),                                          # anonymous
    (lambda r, s: r.update(headers={"X-API-Key": "lk_nope"}), 401),                    # a bad caller key
    (lambda r, s: r.update(headers={"Authorization": "Basic abc"}), 401),
    (lambda r, s: r.update(headers={"X-API-Key": s["plain"]}), 403),                   # no keys:verify
    (lambda r, s: r.update(headers={"X-API-Key": s["from_elsewhere"]}), 403),          # outside its allowlist
    (lambda r, s: r.update(headers=s["admin"]), 200),                                  # an admin's JWT
    (lambda r, s: r.update(headers={"X-API-Key": s["with_quota"]}), 200),              # the view counts the quota
])
def test_everything_else_goes_on_to_the_view_with_its_body(client, make, service, key, passed_on, change, status):
    caller = make.user(admin=True)
    callers = {
        "plain": make.key(caller, scopes=["keys:read"]).secret,
        "from_elsewhere": make.key(caller, scopes=["keys:verify"], allowed_ips=["10.0.0.0/8"]).secret,
        "with_quota": make.key(caller, scopes=["keys:verify"], quota_limit=5, quota_period="day").secret,
        "admin": make.headers(caller),
    }
    request = {"json": {"key": key.secret}, "headers": service}
    change(request, callers)
    response = client.post(URL, **request)
    assert passed_on == [1]
    if status != 200:
        assert_error(response, status)
    else:  # the view read the body the fast path had read first
        assert response.get_json()["meta"]["key"]["id"] == str(key.id)
    if request["headers"] == {"X-API-Key": callers["with_quota"]}:
        assert response.headers["X-Quota-Remaining"] == "4"


@pytest.mark.parametrize("config_overrides", [{"CORS_ORIGINS": ["https://console.example.com"]}])
def test_a_browser_request_gets_its_cors_headers_from_flask(client, service, key, passed_on):
    response = client.post(URL, json={"key": key.secret}, headers={**service, "Origin": "https://console.example.com"})
    assert response.status_code == 200 and passed_on == [1]
    assert response.headers["Access-Control-Allow-Origin"] == "https://console.example.com"


@pytest.mark.parametrize("config_overrides", [{"TRUSTED_PROXIES": 1}])
def test_the_fast_path_sees_the_client_address_behind_a_trusted_proxy(client, make, key, passed_on):
    caller = make.key(make.user(admin=True), scopes=["keys:verify"], allowed_ips=["203.0.113.0/24"]).secret
    response = client.post(URL, json={"key": key.secret}, headers={"X-API-Key": caller, "X-Forwarded-For": "203.0.113.9"})
    assert response.status_code == 200 and passed_on == []


@pytest.mark.parametrize("config_overrides", [{"RATELIMIT_ON_STORAGE_ERROR": "closed"}])
def test_an_error_after_the_checks_began_is_answered_as_the_view_would(client, make, service, passed_on, monkeypatch):
    def unreachable(*args):
        raise RedisConnectionError("down")

    monkeypatch.setattr(allowances, "admit", unreachable)
    limited = make.key(make.user(), budget_limit=10, budget_period="day")
    response = client.post(URL, json={"key": limited.secret}, headers=service)
    assert_error(response, 503, code="LIMITS_UNAVAILABLE")
    assert response.headers["Retry-After"] == "5" and passed_on == []
