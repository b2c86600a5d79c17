"""The Flask decorator and the WSGI middleware with a stub client: which header carries the key, what
each answer becomes (the same table for both), and what reaches the application."""
import json

import pytest
from flask import Flask, g
from latchkey_client import (
    CODES,
    STATUS_OF,
    LatchkeyRequestError,
    LatchkeyThrottled,
    LatchkeyUnavailable,
    Verification,
)
from latchkey_client.flask import LatchkeyFlask, require_key
from latchkey_client.wsgi import ENVIRON_KEY, LatchkeyMiddleware
from werkzeug.test import Client

JSONAPI = "application/vnd.api+json"


class StubClient:
    """Answers `code` for every key (or raises `error`); records what it was asked."""

    def __init__(self):
        self.code, self.error, self.asked = "VALID", None, []

    def verify(self, key, scopes=(), ip=None, cost=None):
        self.asked.append((key, tuple(scopes), ip, cost))
        if self.error:
            raise self.error
        extra = {"retry_after": 30} if self.code in ("RATE_LIMITED", "QUOTA_EXCEEDED") else {}
        return Verification(valid=self.code == "VALID", code=self.code, key_id="42" if self.code == "VALID" else None,
                            **extra)


@pytest.fixture
def stub():
    return StubClient()


@pytest.fixture(params=["flask", "wsgi"])
def web(request, stub):
    """A client of a protected app, through the decorator or the middleware."""
    app = Flask(__name__)
    if request.param == "flask":
        LatchkeyFlask(app, stub)

        @app.get("/thing")
        @require_key("things:read", cost=lambda: 2)
        def thing():
            return {"key-id": g.latchkey.key_id}
    else:
        @app.get("/thing")
        def thing():
            from flask import request as current

            return {"key-id": current.environ[ENVIRON_KEY].key_id}

        app.wsgi_app = LatchkeyMiddleware(app.wsgi_app, stub, scopes=["things:read"], cost=lambda environ: 2,
                                          exempt=["/healthz"])

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    return app.test_client()


def error_of(response, status):
    assert response.status_code == status
    assert response.headers["Content-Type"] == JSONAPI
    (error,) = json.loads(response.data)["errors"]
    assert error["status"] == str(status) and error["title"] and error["detail"]
    return error["code"]


@pytest.mark.parametrize("headers", [{"X-API-Key": "lk_abc"}, {"Authorization": "Bearer lk_abc"},
                                     {"Authorization": "bearer  lk_abc "}])
def test_the_key_comes_from_either_header(web, stub, headers):
    response = web.get("/thing", headers=headers)
    assert response.status_code == 200 and response.get_json() == {"key-id": "42"}
    assert stub.asked == [("lk_abc", ("things:read",), "127.0.0.1", 2)]


@pytest.mark.parametrize("headers, code", [
    ({}, "UNAUTHENTICATED"),
    ({"Authorization": "Basic YTpi"}, "INVALID_AUTHORIZATION"),
    ({"Authorization": "Bearer "}, "INVALID_AUTHORIZATION"),
])
def test_no_key_is_401_without_asking_latchkey(web, stub, headers, code):
    response = web.get("/thing", headers=headers)
    assert error_of(response, 401) == code and response.headers["WWW-Authenticate"] == "Bearer"
    assert stub.asked == []


@pytest.mark.parametrize("code", [c for c in CODES if c != "VALID"])
def test_every_refusal_has_its_status_and_code(web, stub, code):
    stub.code = code
    response = web.get("/thing", headers={"X-API-Key": "lk_abc"})
    assert error_of(response, STATUS_OF[code]) == code
    if code in ("RATE_LIMITED", "QUOTA_EXCEEDED"):
        assert response.headers["Retry-After"] == "30"


def test_latchkey_unreachable_is_503_and_a_refused_service_is_500(web, stub):
    stub.error = LatchkeyUnavailable("down", status=503, retry_after=3)
    response = web.get("/thing", headers={"X-API-Key": "lk_abc"})
    assert error_of(response, 503) == "LATCHKEY_UNAVAILABLE" and response.headers["Retry-After"] == "3"
    stub.error = LatchkeyRequestError(401, "NOT_FOUND", "unknown key")
    assert error_of(web.get("/thing", headers={"X-API-Key": "lk_abc"}), 500) == "LATCHKEY_ERROR"


@pytest.mark.parametrize("code", ["RATE_LIMITED", "QUOTA_EXCEEDED"])
def test_latchkey_refusing_the_service_is_503_never_served(web, stub, code):
    stub.error = LatchkeyThrottled(429, code, "too many", retry_after=42.5)
    response = web.get("/thing", headers={"X-API-Key": "lk_abc"})
    assert error_of(response, 503) == "LATCHKEY_THROTTLED" and response.headers["Retry-After"] == "43"
    stub.error = LatchkeyThrottled(429, code, "too many")
    response = web.get("/thing", headers={"X-API-Key": "lk_abc"})
    assert error_of(response, 503) == "LATCHKEY_THROTTLED" and "Retry-After" not in response.headers


def test_unprotected_paths_are_not_checked(web, stub):
    assert web.get("/healthz").status_code == 200 and stub.asked == []


def test_the_middleware_protects_only_its_prefixes(stub):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    client = Client(LatchkeyMiddleware(app, stub, prefixes=["/api/"]))
    assert client.get("/public").status_code == 200
    assert client.get("/api/x").status_code == 401
