"""Sessions and credentials: login, refresh, logout, and every way a token or header can be wrong.

Product map: JWT access (short) + refresh tokens; logout revokes the session (the blocklist survives
restarts); a wrong password and an unknown email get the same answer; logins are rate limited per
email and per IP; credentials never travel in the URL. Every refusal is a JSON:API error document.
"""
import base64
import json
import time
from datetime import timedelta

import jwt
import pytest
from flask_jwt_extended import create_access_token

from app import create_app
from app.extensions import db
from config import TestingConfig
from tests.helpers import JSONAPI, PASSWORD, assert_error, bearer, login, start_session

WRONG_PASSWORD = "not the right passphrase"


def read_account(client, user, token):
    return client.get(f"/v1/users/{user.id}", headers=bearer(token))


def refresh(client, token):
    return client.post("/v1/auth/refresh", headers=bearer(token))


@pytest.fixture
def sibling_app(app):
    """Build apps on the same database and limiter storage as `app`: another worker, or a restart."""
    built = []

    def build(**overrides):
        shared = {name: app.config[name] for name in
                  ("SQLALCHEMY_DATABASE_URI", "RATELIMIT_STORAGE_URI", "RATELIMIT_KEY_PREFIX")}
        built.append(create_app(TestingConfig, **{**shared, **overrides}))
        return built[-1]

    yield build
    for other in built:
        with other.app_context():
            db.engine.dispose()


def assert_unauthorized(response, code):
    assert_error(response, 401, code)
    assert response.headers["WWW-Authenticate"] == "Bearer"


# --- Login ------------------------------------------------------------------------------------------

LOGIN_BODIES = {
    "plain JSON": lambda email: {"email": email, "password": PASSWORD},
    "JSON:API document": lambda email: {"data": {"type": "sessions",
                                                 "attributes": {"email": email, "password": PASSWORD}}},
}


@pytest.mark.parametrize("body", LOGIN_BODIES.values(), ids=LOGIN_BODIES.keys())
def test_login_returns_a_working_session(client, make, secrets_seen, body):
    user = make.user()

    response = client.post("/v1/auth/login", json=body(user.email.upper()))

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith(JSONAPI)
    assert response.headers["Cache-Control"] == "no-store"
    meta = response.get_json()["meta"]
    secrets_seen.add(meta["access_token"], meta["refresh_token"])
    assert meta["token_type"] == "Bearer"
    assert meta["user_id"] == str(user.id)
    assert isinstance(meta["expires_in"], int) and meta["expires_in"] > 0
    assert read_account(client, user, meta["access_token"]).status_code == 200


def test_wrong_password_and_unknown_email_get_the_same_answer(client, make):
    user = make.user()

    wrong_password = login(client, user.email, WRONG_PASSWORD)
    unknown_email = login(client, "nobody@example.com", PASSWORD)

    assert_unauthorized(wrong_password, "INVALID_CREDENTIALS")
    assert unknown_email.status_code == wrong_password.status_code
    assert unknown_email.get_json() == wrong_password.get_json()


@pytest.mark.parametrize("body", [{"email": "someone@example.com"}, {"password": PASSWORD},
                                  {"email": ["a@example.com"], "password": PASSWORD}])
def test_login_without_string_credentials_is_a_validation_error(client, body):
    assert_error(client.post("/v1/auth/login", json=body), 422)


def test_refresh_token_gives_a_new_working_access_token(client, make, secrets_seen):
    user = make.user()
    _, refresh_token = start_session(client, user, secrets_seen)

    response = refresh(client, refresh_token)

    assert response.status_code == 200, response.get_data(as_text=True)
    meta = response.get_json()["meta"]
    secrets_seen.add(meta["access_token"])
    assert "refresh_token" not in meta
    assert read_account(client, user, meta["access_token"]).status_code == 200


# --- Tampered and misused tokens --------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _payload(token):
    segment = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def _edit_payload(token, **changes):
    """Change claims but keep the original header and signature."""
    header, _, signature = token.split(".")
    return ".".join([header, _b64(json.dumps({**_payload(token), **changes}).encode()), signature])


def _sign(claims, key, algorithm="HS256"):
    return jwt.encode(claims, key, algorithm=algorithm)


# Each makes a bad token from a genuine one; `key` is the server's JWT secret, `victim` another user.
TAMPERINGS = {
    "algorithm none": lambda token, key, victim: _sign(_payload(token), None, "none"),
    "signed with another key": lambda token, key, victim: _sign(_payload(token), "another-secret-" * 4),
    "HS512 with the right key": lambda token, key, victim: _sign(_payload(token), key, "HS512"),
    "payload edited to another user": lambda token, key, victim: _edit_payload(token, sub=str(victim.id)),
    "expired": lambda token, key, victim: _sign({**_payload(token), "exp": int(time.time()) - 60}, key),
    "not yet valid": lambda token, key, victim: _sign({**_payload(token), "nbf": int(time.time()) + 3600}, key),
    "signature cut short": lambda token, key, victim: token[:-6],
    "not a JWT at all": lambda token, key, victim: "not-a-jwt",
}


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("tamper", TAMPERINGS.values(), ids=TAMPERINGS.keys())
@pytest.mark.parametrize("kind", ["access", "refresh"])
def test_tampered_tokens_are_refused(app, client, make, tamper, kind):
    user, victim = make.user(), make.user(admin=True)
    bad = tamper(make.token(user, refresh=kind == "refresh"), app.config["JWT_SECRET_KEY"], victim)

    response = read_account(client, victim, bad) if kind == "access" else refresh(client, bad)

    assert_unauthorized(response, "INVALID_TOKEN")


def test_a_token_the_server_issued_is_refused_once_expired(make, secrets_seen, sibling_app):
    short_lived = sibling_app(JWT_ACCESS_TOKEN_EXPIRES=timedelta(seconds=-60))
    user = make.user()
    with short_lived.app_context():
        token = secrets_seen.add(create_access_token(str(user.id), additional_claims={"sid": "expired"}))

    assert_unauthorized(read_account(short_lived.test_client(), user, token), "INVALID_TOKEN")


@pytest.mark.parametrize("send, token_kind", [
    (lambda client, user, token: read_account(client, user, token), "refresh"),
    (lambda client, user, token: client.post("/v1/auth/logout", headers=bearer(token)), "refresh"),
    (lambda client, user, token: refresh(client, token), "access"),
], ids=["refresh token on a resource", "refresh token at logout", "access token at /auth/refresh"])
def test_a_token_of_the_wrong_type_is_refused(client, make, send, token_kind):
    user = make.user()

    response = send(client, user, make.token(user, refresh=token_kind == "refresh"))

    assert_unauthorized(response, "WRONG_TOKEN_TYPE")


@pytest.mark.parametrize("kind", ["access", "refresh"])
def test_a_deleted_users_tokens_are_refused(client, make, kind):
    user, admin = make.user(), make.user(admin=True)
    token = make.token(user, refresh=kind == "refresh")
    assert client.delete(f"/v1/users/{user.id}", headers=make.headers(admin)).status_code == 200

    response = read_account(client, user, token) if kind == "access" else refresh(client, token)

    assert_unauthorized(response, "INVALID_TOKEN")


# --- Logout -----------------------------------------------------------------------------------------

class TestLogout:
    @pytest.fixture
    def session(self, client, make, secrets_seen):
        """A logged-in user, a second access token got by refreshing, then logout of that session."""
        user = make.user()
        access, refresh_token = start_session(client, user, secrets_seen)
        refreshed = secrets_seen.add(refresh(client, refresh_token).get_json()["meta"]["access_token"])
        logout = client.post("/v1/auth/logout", headers=bearer(access))
        return {"user": user, "logout": logout, "access": access, "refreshed access": refreshed,
                "refresh": refresh_token}

    def test_logout_answers_no_content(self, session):
        assert session["logout"].status_code == 204
        assert session["logout"].get_data() == b""

    @pytest.mark.parametrize("token", ["access", "refreshed access"])
    def test_every_access_token_of_the_session_is_revoked(self, client, session, token):
        assert_unauthorized(read_account(client, session["user"], session[token]), "TOKEN_REVOKED")

    def test_the_refresh_token_is_revoked(self, client, session):
        assert_unauthorized(refresh(client, session["refresh"]), "TOKEN_REVOKED")

    def test_logging_out_twice_is_refused(self, client, session):
        assert_unauthorized(client.post("/v1/auth/logout", headers=bearer(session["access"])), "TOKEN_REVOKED")

    def test_other_sessions_of_the_user_keep_working(self, client, session, secrets_seen):
        other_access, _ = start_session(client, session["user"], secrets_seen)
        assert read_account(client, session["user"], other_access).status_code == 200

    def test_the_revocation_survives_a_restart(self, session, sibling_app):
        restarted = sibling_app()

        response = read_account(restarted.test_client(), session["user"], session["access"])

        assert_unauthorized(response, "TOKEN_REVOKED")


def test_logout_with_an_api_key_is_refused(client, make):
    key = make.key(make.user())
    assert_error(client.post("/v1/auth/logout", headers={"X-API-Key": key.secret}), 400)


# --- Login rate limits -----------------------------------------------------------------------------

class TestLoginRateLimit:
    LIMIT = 3

    @pytest.fixture
    def config_overrides(self):
        return {"RATE_LIMIT_LOGIN": f"{self.LIMIT} per minute"}

    # Where failed attempts come from: one email (in any case) from many addresses, or many emails
    # from one address.
    BUCKETS = {
        "per email": lambda victim, attempt: (victim.email.upper() if attempt % 2 else victim.email,
                                              f"10.0.1.{attempt}"),
        "per IP": lambda victim, attempt: (f"guess{attempt}@example.com", "10.0.2.1"),
    }

    @pytest.mark.parametrize("bucket", BUCKETS.values(), ids=BUCKETS.keys())
    def test_repeated_failures_are_limited_even_for_the_right_password(self, client, make, bucket):
        victim = make.user()
        for attempt in range(self.LIMIT):
            email, ip = bucket(victim, attempt)
            assert_unauthorized(login(client, email, WRONG_PASSWORD, ip), "INVALID_CREDENTIALS")

        _, ip = bucket(victim, self.LIMIT)  # the next attempt, in the same bucket
        response = login(client, victim.email, PASSWORD, ip)

        assert_error(response, 429, "RATE_LIMITED")
        assert int(response.headers["Retry-After"]) > 0

    def test_other_emails_from_other_addresses_are_not_limited(self, client, make):
        victim, bystander = make.user(), make.user()
        for attempt in range(self.LIMIT + 1):
            login(client, victim.email, WRONG_PASSWORD, f"10.0.3.{attempt}")

        assert login(client, bystander.email, PASSWORD, "10.0.4.1").status_code == 200


# --- Malformed credentials -------------------------------------------------------------------------

@pytest.mark.parametrize("parameter", ["api_key", "apikey", "key", "access_token", "token", "q"])
def test_credentials_in_the_query_string_are_refused(client, make, parameter):
    user = make.user()
    key = make.key(user, scopes=["users:read"])

    response = client.get(f"/v1/users/{user.id}", query_string={parameter: key.secret},
                          headers=make.headers(user))

    error = assert_error(response, 400, "CREDENTIAL_IN_QUERY")
    assert error["source"] == {"parameter": parameter}


@pytest.mark.parametrize("authorization, code", [
    ("Basic x", "INVALID_AUTHORIZATION"),
    ("Basic dXNlcjpwYXNzd29yZA==", "INVALID_AUTHORIZATION"),
    ("Bearer", "INVALID_AUTHORIZATION"),
    ("Token abc", "INVALID_AUTHORIZATION"),
    ("Bearer not-a-token", "INVALID_TOKEN"),
])
def test_malformed_authorization_headers_are_refused(client, make, authorization, code):
    user = make.user()

    response = client.get(f"/v1/users/{user.id}", headers={"Authorization": authorization})

    assert_unauthorized(response, code)
