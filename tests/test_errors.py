"""Every error is a JSON:API error document: `errors` with a string status and a title, served as
application/vnd.api+json; never an HTML page, never a traceback. One title per kind of error
(errors.TITLES), whoever raised it; every 405 names the allowed methods; Retry-After only on 429
and 503, in whole seconds rounded up.

Product map bar: JSON:API error documents everywhere (401/403/404/405/406/409/415/422/429/500).
"""
from datetime import UTC, datetime

import pytest
from sqlalchemy.exc import ProgrammingError  # a bug; OperationalError (database down) is a 503

from app.api.helpers import ratelimit
from app.api.helpers.errors import TITLES, retry_after, title_of
from tests.conftest import JSONAPI, PASSWORD, assert_error, resource


@pytest.fixture
def config_overrides():
    return {"RATE_LIMIT_SIGNUP": "1 per minute"}


def sign_up(client, attributes, type_="users", **kwargs):
    kwargs.setdefault("headers", {"Content-Type": JSONAPI})
    return client.post("/v1/users", json=resource(type_, attributes), **kwargs)


def as_admin(make):
    return make.headers(make.user(admin=True))


def twice(send):
    send()
    return send()


def key_headers(make, **attributes):
    return {"X-API-Key": make.key(make.user(), **attributes).secret}


# name: (request, status, code); each request gets (client, make).
ERRORS = {
    "401 no credentials": (lambda client, make: client.get("/v1/users"), 401, "UNAUTHENTICATED"),
    "403 not an admin": (lambda client, make: client.get("/v1/users", headers=make.headers(make.user())), 403,
                         "ADMIN_REQUIRED"),
    "404 unknown route": (lambda client, make: client.get("/no/such/route"), 404, None),
    "404 unknown route under /v1": (lambda client, make: client.get("/v1/no-such-resource"), 404, None),
    "404 missing user": (lambda client, make: client.get("/v1/users/999999", headers=as_admin(make)), 404, None),
    "405 PUT on the user list": (lambda client, make: client.put("/v1/users", json={}), 405, None),
    "405 GET on login": (lambda client, make: client.get("/v1/auth/login"), 405, None),
    "406 Accept with media type parameters": (
        lambda client, make: client.get("/v1/users", headers={**as_admin(make),
                                                              "Accept": f"{JSONAPI}; charset=x"}), 406, None),
    "415 sign-up as text/plain": (
        lambda client, make: client.post("/v1/users", data="email=a@example.com", content_type="text/plain"), 415,
        None),
    "415 login as text/plain": (
        lambda client, make: client.post("/v1/auth/login", data="email=a@example.com", content_type="text/plain"),
        415, None),
    "400 malformed JSON sign-up": (
        lambda client, make: client.post("/v1/users", data='{"data": {', content_type=JSONAPI), 400, None),
    "400 malformed JSON login": (
        lambda client, make: client.post("/v1/auth/login", data='{"email": ', content_type="application/json"),
        400, None),
    "400 bad page parameter": (
        lambda client, make: client.get("/v1/users?page[size]=ten", headers=as_admin(make)), 400, None),
    "409 wrong resource type": (
        lambda client, make: sign_up(client, {"email": "a@example.com", "password": PASSWORD}, type_="api-keys"),
        409, None),
    "409 email taken": (
        lambda client, make: sign_up(client, {"email": make.user().email.upper(), "password": PASSWORD}), 409,
        None),
    "422 invalid attribute": (
        lambda client, make: sign_up(client, {"email": "not-an-email", "password": PASSWORD}), 422, None),
    "429 sign-ups over the limit": (
        lambda client, make: twice(lambda: sign_up(client, {"email": f"{make.count}@example.com",
                                                            "password": PASSWORD})), 429, "RATE_LIMITED"),
    # more kinds, from every layer that raises errors: ours, the library's, werkzeug's
    "400 unknown query parameter": (lambda client, make: client.get("/v1/scopes?foo=1"), 400, None),
    "400 credentials in the query string": (
        lambda client, make: client.get("/v1/scopes?api_key=x"), 400, "CREDENTIAL_IN_QUERY"),
    "400 sort on an unknown attribute": (
        lambda client, make: client.get("/v1/users?sort=shoe-size", headers=as_admin(make)), 400, None),
    "401 unknown key": (lambda client, make: client.get("/v1/api-keys", headers={"X-API-Key": "lk_nope"}), 401,
                        "NOT_FOUND"),
    "403 insufficient scope": (
        lambda client, make: client.post("/v1/api-keys", json=resource("api-keys", {"name": "x"}),
                                         headers=key_headers(make)), 403, "INSUFFICIENT_SCOPES"),
    "403 verification with a user's session": (
        lambda client, make: client.post("/v1/api-keys/verify", json={"key": "x"}, headers=make.headers(make.user())),
        403, "INSUFFICIENT_SCOPES"),
    "413 a body over the limit": (
        lambda client, make: client.post("/v1/users", data=b"x" * (1024 * 1024 + 1), content_type=JSONAPI), 413,
        None),
    "415 the JSON:API media type with a parameter": (
        lambda client, make: client.post("/v1/users", data="{}", content_type=f"{JSONAPI}; charset=utf-8"), 415,
        None),
    "422 verification attribute": (
        lambda client, make: client.post("/v1/api-keys/verify", json={"key": 7}, headers={"X-API-Key": make.key(
            make.user(admin=True), scopes=["keys:verify"]).secret}), 422, None),
    "429 quota spent": (
        lambda client, make: client.get("/v1/api-keys", headers=key_headers(make, quota_limit=0, quota_period="day")),
        429, "QUOTA_EXCEEDED"),
}


def assert_no_internals(response):
    body = response.get_data(as_text=True)
    for internal in ("<html", "<!doctype", "Traceback", 'File "', "werkzeug", "sqlalchemy"):
        assert internal.lower() not in body.lower(), body


@pytest.mark.parametrize("send, status, code", ERRORS.values(), ids=ERRORS.keys())
def test_every_error_is_a_jsonapi_document(client, make, send, status, code):
    response = send(client, make)

    error = assert_error(response, status, code)
    assert error["detail"]
    assert response.get_json()["jsonapi"] == {"version": "1.0"}
    assert_no_internals(response)
    assert error["title"] == title_of(status, code), "one title per kind: errors.TITLES"
    assert ("Retry-After" in response.headers) == (status in (429, 503)), response.headers


def test_the_titles_are_one_table():
    assert title_of(404) == title_of(404, "NO_SUCH_CODE") == "Not found"
    assert title_of(403, "INSUFFICIENT_SCOPES") == "Insufficient scope"
    assert title_of(403, "ADMIN_REQUIRED") == "Forbidden"  # a code without a title of its own
    assert title_of(418) == "I'm a teapot"  # a status werkzeug may answer that the table lacks: its reason
    for key, title in TITLES.items():
        status = key if isinstance(key, int) else key[0]
        assert title and title[0].isupper() and not title.endswith("."), (key, title)
        assert isinstance(key, int) or status in TITLES, f"{key}: its status has a title of its own too"


# --- 405 --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method, path, allowed", [
    ("PUT", "/v1/users", {"GET", "POST"}),
    ("GET", "/v1/auth/login", {"POST"}),
    ("DELETE", "/v1/scopes", {"GET"}),
    ("GET", "/v1/api-keys/verify", {"POST"}),
    ("POST", "/v1/api-keys/1", {"GET", "PATCH", "DELETE"}),
    ("DELETE", "/v1/api-keys/1/relationships/user", {"GET", "PATCH"}),
    ("POST", "/v1/usage", {"GET"}),
    ("PATCH", "/v1/api-keys/1/revoke", {"POST"}),
])
def test_every_405_names_the_allowed_methods(client, method, path, allowed):
    response = client.open(path, method=method)

    assert_error(response, 405)
    named = set(response.headers["Allow"].replace(" ", "").split(","))
    assert named - {"HEAD", "OPTIONS"} == allowed, response.headers["Allow"]


def test_a_405_a_view_raises_names_the_routes_other_methods(client, make):
    """POST /v1/users/<id>/api-keys shares its route with GET; keys are created at /v1/api-keys."""
    response = client.post(f"/v1/users/{make.user().id}/api-keys", json=resource("api-keys", {"name": "x"}),
                           headers=as_admin(make))

    assert_error(response, 405)
    assert set(response.headers["Allow"].replace(" ", "").split(",")) - {"HEAD", "OPTIONS"} == {"GET"}


# --- Retry-After ------------------------------------------------------------------------------------

@pytest.mark.parametrize("seconds, header", [(0, "1"), (0.2, "1"), (1, "1"), (1.000001, "2"), (59.5, "60"),
                                             (3600, "3600")])
def test_retry_after_is_whole_seconds_rounded_up(seconds, header):
    assert retry_after(seconds) == {"Retry-After": header}


def test_a_spent_quota_is_retried_when_its_period_ends(client, make, monkeypatch):
    """1.5 s before midnight, a spent daily quota says 2 (1 would bring the client back too early)."""
    monkeypatch.setattr(ratelimit, "utcnow", lambda: datetime(2026, 1, 1, 23, 59, 58, 500000, tzinfo=UTC))
    response = client.get("/v1/api-keys", headers=key_headers(make, quota_limit=0, quota_period="day"))

    assert_error(response, 429, code="QUOTA_EXCEEDED")
    assert response.headers["Retry-After"] == "2"


@pytest.mark.parametrize("config_overrides", [{"RATE_LIMIT_DEFAULTS": "2 per minute"}])
def test_only_a_refusal_says_when_to_retry(client):
    answers = [client.get("/v1/scopes") for _ in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert ["Retry-After" in answer.headers for answer in answers] == [False, False, True]
    assert 1 <= int(answers[2].headers["Retry-After"]) <= 60
    assert answers[2].headers["X-RateLimit-Remaining"] == "0"


# --- 500: an unexpected exception ------------------------------------------------------------------

def explode_in_a_new_route(app, monkeypatch, client):
    def explode():
        raise RuntimeError("internal detail: /srv/latchkey/secret-path")

    app.add_url_rule("/v1/explode", "explode", explode)
    return client.get("/v1/explode"), "internal detail"


def explode_in_the_database_during_sign_up(app, monkeypatch, client):
    def broken_hash(password):
        raise ProgrammingError("UPDATE users SET password_hash = %(hash)s", {"hash": "x"}, Exception("syntax"))

    monkeypatch.setattr("app.api.users.hash_password", broken_hash)
    return sign_up(client, {"email": "unlucky@example.com", "password": PASSWORD}), "password_hash"


@pytest.mark.parametrize("explode", [explode_in_a_new_route, explode_in_the_database_during_sign_up],
                         ids=["exception in a view", "database error in a resource"])
def test_an_unexpected_exception_is_a_500_document_without_internals(app, client, monkeypatch, caplog, explode):
    response, internal_text = explode(app, monkeypatch, client)

    error = assert_error(response, 500)
    body = response.get_data(as_text=True)
    assert internal_text not in body
    assert "Error" not in error["detail"]
    assert_no_internals(response)
    assert any(record.levelname == "ERROR" for record in caplog.records), "the operator sees nothing in the logs"
