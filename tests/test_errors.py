"""Every error is a JSON:API error document: `errors` with a string status and a title, served as
application/vnd.api+json; never an HTML page, never a traceback.

Product map bar: JSON:API error documents everywhere (401/403/404/405/406/409/415/422/429/500).
"""
import pytest
from sqlalchemy.exc import ProgrammingError  # a bug; OperationalError (database down) is a 503

from tests.conftest import JSONAPI, PASSWORD, assert_error, resource


@pytest.fixture
def config_overrides():
    return {"RATE_LIMIT_SIGNUP": "1 per minute"}


def sign_up(client, attributes, type_="user", **kwargs):
    kwargs.setdefault("headers", {"Content-Type": JSONAPI})
    return client.post("/v1/users", json=resource(type_, attributes), **kwargs)


def as_admin(make):
    return make.headers(make.user(admin=True))


def twice(send):
    send()
    return send()


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
        lambda client, make: sign_up(client, {"email": "a@example.com", "password": PASSWORD}, type_="api-key"),
        409, None),
    "409 email taken": (
        lambda client, make: sign_up(client, {"email": make.user().email.upper(), "password": PASSWORD}), 409,
        None),
    "422 invalid attribute": (
        lambda client, make: sign_up(client, {"email": "not-an-email", "password": PASSWORD}), 422, None),
    "429 sign-ups over the limit": (
        lambda client, make: twice(lambda: sign_up(client, {"email": f"{make.count}@example.com",
                                                            "password": PASSWORD})), 429, "RATE_LIMITED"),
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


def test_405_names_the_allowed_methods(client):
    response = client.put("/v1/users", json={})

    assert_error(response, 405)
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


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
