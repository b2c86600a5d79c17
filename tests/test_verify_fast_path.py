"""The verification's door of the fast path (app/fast_path.py, verify.fast_answer) and the Flask view
are two doors to one pipeline (verify.answer): the same request gets the same bytes and headers
through either. The fast path answers everything
itself, errors included, except the requests that a request hook of the app has work on, which it
passes on to Flask whole; a hook it does not know turns it off. (tests/test_verify.py runs every
answer both ways.)"""
import json

import jwt
import pytest
from flask import g
from redis.exceptions import ConnectionError as RedisConnectionError

from app.api import verify
from app.fast_path import FastPath, unhonoured_hooks
from app.services import allowances
from tests.conftest import JSONAPI, assert_error
from tests.helpers import fast_path_of

URL = "/v1/api-keys/verify"


@pytest.fixture
def service(make):
    return {"X-API-Key": make.key(make.user(admin=True), scopes=["keys:verify"]).secret}


@pytest.fixture
def key(make):
    return make.key(make.user(), scopes=["llm:*"])


# Each request variant: (change to a request, status). Run through both doors, with callers made anew
# for each, so that counting (quotas, usage) starts from the same state.
VARIANTS = [
    (lambda r, s: None, 200),
    (lambda r, s: r.update(headers={"Authorization": f"Bearer {s['service']}"}), 200),
    (lambda r, s: r.update(data="{not json", content_type="application/json", json=None), 400),
    (lambda r, s: r.update(data="[1, 2]", content_type="application/json", json=None), 400),
    (lambda r, s: r.update(data=json.dumps(r.pop("json")), content_type="text/plain"), 415),
    (lambda r, s: r["json"].update(cost=-1), 422),
    (lambda r, s: r["json"].update(key=7), 422),
    (lambda r, s: r["json"].update(scopes="llm:x"), 422),
    (lambda r, s: r["json"].update(ip="300.1.1.1"), 422),
    (lambda r, s: r.update(headers={}), 401),                                          # anonymous
    (lambda r, s: r.update(headers={"X-API-Key": "lk_nope"}), 401),                    # a bad caller key
    (lambda r, s: r.update(headers={"Authorization": "Basic abc"}), 401),
    (lambda r, s: r.update(headers={"Authorization": "Bearer not-a-token"}), 401),
    (lambda r, s: r.update(headers={"X-API-Key": s["plain"]}), 403),                   # no keys:verify
    (lambda r, s: r.update(headers={"X-API-Key": s["from_elsewhere"]}), 403),          # outside its allowlist
    (lambda r, s: r.update(headers=s["user"]), 403),                                   # a user's JWT
    (lambda r, s: r.update(headers=s["admin"]), 200),                                  # an admin's JWT
    (lambda r, s: r.update(headers={"X-API-Key": s["with_quota"]}), 200),              # its quota is counted
    (lambda r, s: r.update(headers={"X-API-Key": s["quota_spent"]}), 429),
    # content negotiation (requests.negotiate), judged before the caller in both doors
    (lambda r, s: r.update(data=json.dumps(r.pop("json")), content_type=f"{JSONAPI}; charset=utf-8"), 415),
    (lambda r, s: r.update(data=json.dumps(r.pop("json")), content_type=f"{JSONAPI}; ext=x", headers={}), 415),
    (lambda r, s: r.update(data=json.dumps(r.pop("json")), content_type="application/json; charset=utf-8"), 200),
    (lambda r, s: r.update(data=json.dumps(r.pop("json")), content_type=JSONAPI), 200),
    (lambda r, s: r.update(data=json.dumps(r.pop("json")), content_type="text/plain", headers={}), 415),
    (lambda r, s: r["headers"].update(Accept=f"{JSONAPI}; ext=x"), 406),
    (lambda r, s: r["headers"].update(Accept=f"{JSONAPI}; ext=x, */*"), 406),
    (lambda r, s: r.update(headers={"Accept": f"{JSONAPI}; charset=x"}), 406),
    (lambda r, s: r["headers"].update(Accept=f"{JSONAPI};q=0.9, */*;q=0.1"), 200),
    (lambda r, s: r["headers"].update(Accept="*/*"), 200),
    (lambda r, s: r["headers"].update(Accept="application/json"), 200),
    # signed tokens (tests/test_verify_tokens.py): compared by their header and claims (_comparable)
    (lambda r, s: r["json"].update(token=True), 200),
    (lambda r, s: r["json"].update(token=False), 200),
    (lambda r, s: (r["json"].update(token=True), r.update(headers=s["admin"])), 200),
    (lambda r, s: r.update(data=json.dumps({"data": {"type": "x", "attributes": {**r.pop("json"), "token": True}}}),
                           content_type=JSONAPI), 200),
    (lambda r, s: r["json"].update(token=True, key="lk_nope"), 200),                  # invalid: no token
    (lambda r, s: r["json"].update(token=True, scopes=["admin:access"]), 200),         # invalid: no token
    (lambda r, s: r["json"].update(token="true"), 422),
    (lambda r, s: r["json"].update(token=None), 422),
]


def _callers(make):
    caller = make.user(admin=True)
    return {
        "service": make.key(caller, scopes=["keys:verify"]).secret,
        "plain": make.key(caller, scopes=["keys:read"]).secret,
        "from_elsewhere": make.key(caller, scopes=["keys:verify"], allowed_ips=["10.0.0.0/8"]).secret,
        "with_quota": make.key(caller, scopes=["keys:verify"], quota_limit=5, quota_period="day").secret,
        "quota_spent": make.key(caller, scopes=["keys:verify"], quota_limit=0, quota_period="day").secret,
        "admin": make.headers(caller),
        "user": make.headers(make.user()),
    }


def _send(client, make, key, change):
    callers = _callers(make)
    request = {"json": {"key": key.secret}, "headers": {"X-API-Key": callers["service"]}}
    change(request, callers)
    return client.post(URL, **request)


def _comparable(response):
    headers = sorted((name, value) for name, value in response.headers.items() if name != "Content-Length")
    body = response.get_json()
    if response.status_code == 200 and "key" in body["meta"]:
        del body["meta"]["key"]["owner-id"]  # a new owner per call
    if "token" in body.get("meta", {}):  # a new caller (aud), jti and perhaps second (iat) per call
        token = body["meta"]["token"]
        claims = jwt.decode(token, options={"verify_signature": False})
        body["meta"]["token"] = {"header": jwt.get_unverified_header(token), "claims": sorted(claims),
                                 "aud": claims["aud"].split(":")[0], "lifetime": claims["exp"] - claims["iat"],
                                 **{name: claims[name] for name in ("iss", "sub", "owner", "scopes", "code")}}
    return response.status_code, headers, body


@pytest.mark.parametrize("change, status", VARIANTS)
def test_both_doors_give_the_same_answer(app, client, make, key, passed_on, monkeypatch, change, status):
    from app.api.helpers import ratelimit
    from app.models.types import utcnow

    now = utcnow()  # a quota's Retry-After counts the seconds to its reset: the same now for both doors
    monkeypatch.setattr(ratelimit, "utcnow", lambda: now)
    fast = _send(client, make, key, change)
    assert passed_on == [], "the fast path answers this request itself"
    monkeypatch.setattr(FastPath, "takes", lambda self, environ: None)
    slow = _send(client, make, key, change)
    assert passed_on == [1]
    assert fast.status_code == status, fast.get_data(as_text=True)
    assert _comparable(fast) == _comparable(slow)


def test_a_caller_keys_quota_is_counted_through_the_fast_path(client, make, key, passed_on):
    caller = make.key(make.user(admin=True), scopes=["keys:verify"], quota_limit=2, quota_period="day").secret
    answers = [client.post(URL, json={"key": key.secret}, headers={"X-API-Key": caller}) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429] and passed_on == []
    assert [a.headers["X-Quota-Remaining"] for a in answers] == ["1", "0", "0"]
    assert_error(answers[2], 429, code="QUOTA_EXCEEDED")


@pytest.mark.parametrize("change", [
    lambda r: r.update(query_string={"key": "x"}),                      # credentials in the URL: refused
    lambda r: r.update(query_string={"include": "x"}),                  # any query string: Flask's hooks judge it
    lambda r: r.update(
        data=json.dumps({"key": "x", "pad": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}),
        content_type="application/json", json=None),  # deeper than MAX_JSON_DEPTH
    lambda r: r["json"].update(pad="x" * verify.MAX_FAST_BODY),  # a large body
])
def test_a_request_a_hook_has_work_on_goes_to_flask_whole(client, service, key, passed_on, change):
    request = {"json": {"key": key.secret}, "headers": service}
    change(request)
    response = client.post(URL, **request)
    assert passed_on == [1]
    assert response.status_code in (200, 400), response.get_data(as_text=True)
    if response.status_code == 200:  # the view read the body the fast path had read first
        assert response.get_json()["meta"]["key"]["id"] == str(key.id)


@pytest.mark.parametrize("config_overrides", [{}, {"CORS_ORIGINS": ["https://console.example.com"]},
                                              {"TRUSTED_PROXIES": 1}])
def test_the_fast_path_honours_every_request_hook_of_the_app(app, config_overrides):
    """Fails when a request hook is registered that the fast path does not know: list it in
    fast_path.HONOURED with the reason the fast path may skip it, or make the fast path do its work
    (or pass the requests it has work on to Flask)."""
    assert unhonoured_hooks(app, fast_path_of(app).doors.values()) == []


def test_a_hook_it_does_not_honour_turns_the_fast_path_off(app, client, service, key, passed_on):
    @app.after_request
    def stamp(response):
        response.headers["X-Stamp"] = g.get("stamp", "flask")
        return response

    doors = fast_path_of(app).doors.values()
    assert unhonoured_hooks(app, doors) == ["tests.test_verify_fast_path.test_a_hook_it_does_not_honour_turns_the_fast_"
                                     "path_off.<locals>.stamp"]
    response = client.post(URL, json={"key": key.secret}, headers=service)
    assert response.status_code == 200 and response.headers["X-Stamp"] == "flask" and passed_on == [1]


@pytest.mark.parametrize("config_overrides", [{"CORS_ORIGINS": ["https://console.example.com"]}])
def test_a_browser_request_gets_its_cors_headers_from_flask(client, service, key, passed_on):
    response = client.post(URL, json={"key": key.secret}, headers={**service, "Origin": "https://console.example.com"})
    assert response.status_code == 200 and passed_on == [1]
    assert response.headers["Access-Control-Allow-Origin"] == "https://console.example.com"


@pytest.mark.parametrize("config_overrides", [{"TRUSTED_PROXIES": 1}])
def test_the_fast_path_sees_the_client_address_behind_a_trusted_proxy(client, make, key, passed_on):
    caller = make.key(make.user(admin=True), scopes=["keys:verify"], allowed_ips=["203.0.113.0/24"]).secret
    headers = {"X-API-Key": caller, "X-Forwarded-For": "203.0.113.9"}
    response = client.post(URL, json={"key": key.secret}, headers=headers)
    assert response.status_code == 200 and passed_on == []


@pytest.mark.parametrize("config_overrides", [{"RATELIMIT_ON_STORAGE_ERROR": "closed"}])
def test_an_error_after_the_checks_began_is_answered_as_the_view_would(client, make, service, passed_on, monkeypatch):
    def unreachable(*args):
        raise RedisConnectionError("down")

    monkeypatch.setattr(allowances, "admit_key", unreachable)
    limited = make.key(make.user(), budget_limit=10, budget_period="day")
    response = client.post(URL, json={"key": limited.secret}, headers=service)
    assert_error(response, 503, code="LIMITS_UNAVAILABLE")
    assert response.headers["Retry-After"] == "5" and passed_on == []


@pytest.mark.parametrize("way_in", ["fast path", "flask view"])
@pytest.mark.parametrize("config_overrides", [{"RATE_LIMIT_AUTH_FAILURES": "3 per minute"}])
def test_an_address_over_its_failure_limit_gets_429_for_failures_only(client, make, key, monkeypatch, way_in):
    if way_in == "flask view":
        monkeypatch.setattr(FastPath, "takes", lambda self, environ: None)
    account = make.user(admin=True)
    for _ in range(3):
        assert_error(client.post(URL, json={"key": key.secret}, headers={"X-API-Key": "lk_nope"}), 401)
    no_scope = {"X-API-Key": make.key(account, scopes=["keys:read"]).secret}
    for headers in ({"X-API-Key": "lk_nope"}, no_scope, {"Authorization": "Bearer x"}, {}):
        assert_error(client.post(URL, json={"key": key.secret}, headers=headers), 429, code="RATE_LIMITED")
    for headers in ({"X-API-Key": make.key(account, scopes=["keys:verify"]).secret}, make.headers(account)):
        assert client.post(URL, json={"key": key.secret}, headers=headers).status_code == 200
