"""Signed verification tokens: `"token": true` on POST /v1/api-keys/verify, the JWKS that checks
them, and their signing keys (rotation, retirement, encryption at rest).

Tokens are checked the way a service checks them: offline, with PyJWT, against the keys that
GET /.well-known/jwks.json lists. Wall-clock time is frozen or moved through the modules that read
it (`verify.utcnow` for the pipeline, `signing.utcnow` for the signing keys); the workers' refresh
of the current key runs on the `timeline` clock.
"""
import base64
import math
from contextlib import contextmanager
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app import create_app
from app.api import verify
from app.extensions import db
from app.fast_path import FastPath
from app.models import ApiKey, SigningKey
from app.models.types import utcnow
from app.services import signing
from config import TestingConfig
from tests.helpers import assert_error, call, dump_database, register_secret, resource

URL = "/v1/api-keys/verify"
JWKS = "/.well-known/jwks.json"
SECOND = timedelta(seconds=1)
CLAIMS = {"iss", "aud", "sub", "owner", "scopes", "code", "iat", "exp", "jti"}


@pytest.fixture(params=["fast path", "flask view"])
def way_in(request, monkeypatch):
    if request.param == "flask view":
        monkeypatch.setattr(FastPath, "takes", lambda self, environ: None)
    return request.param


@pytest.fixture
def now(monkeypatch):
    """The pipeline's wall-clock time, frozen (a whole second plus a fraction, to see the rounding)."""
    frozen = utcnow().replace(microsecond=600_000)
    monkeypatch.setattr(verify, "utcnow", lambda: frozen)
    return frozen


@pytest.fixture
def account(make):
    return make.user(admin=True)


@pytest.fixture
def service(make, account):
    """A service's key with keys:verify, and the `aud` of the tokens it asks for."""
    caller = make.key(account, scopes=["keys:verify"])
    return {"X-API-Key": caller.secret}, f"key:{caller.id}"


@pytest.fixture
def owner(make):
    return make.user()


@pytest.fixture
def key(make, owner):
    return make.key(owner, scopes=["llm:*", "files:read"])


def ask(client, headers, secret, secrets_seen=None, **fields):
    """POST a verification asking for a token; the token, if any, goes to the log guard."""
    response = client.post(URL, json={"key": secret, "token": True, **fields}, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    meta = response.get_json()["meta"]
    if secrets_seen is not None:
        secrets_seen.add(meta.get("token"))
    return meta


def token_of(client, headers, secret, secrets_seen, **fields) -> str:
    meta = ask(client, headers, secret, secrets_seen, **fields)
    assert meta["valid"] is True, meta
    return meta["token"]


def checked(client, token, audience, verify_exp=True) -> dict:
    """The claims of `token` as a service checks it: against the key of its `kid` in the JWKS."""
    key_set = jwt.PyJWKSet.from_dict(client.get(JWKS).get_json())
    public = key_set[jwt.get_unverified_header(token)["kid"]]  # KeyError: not listed
    return jwt.decode(token, public.key, algorithms=["EdDSA"], audience=audience, issuer="latchkey",
                      options={"verify_exp": verify_exp, "require": sorted(CLAIMS)})


def listed_kids(client) -> list:
    return [item["kid"] for item in client.get(JWKS).get_json()["keys"]]


def kid(token) -> str:
    return jwt.get_unverified_header(token)["kid"]


def rotate_signing_key(app) -> str:
    result = app.test_cli_runner().invoke(args=["tokens", "rotate-signing-key"])
    assert result.exit_code == 0, result.output
    return result.output


@contextmanager
def another_worker(app, **overrides):
    """Yield a test client of another app on the same database: another worker process."""
    names = ("SQLALCHEMY_DATABASE_URI", "RATELIMIT_STORAGE_URI", "RATELIMIT_KEY_PREFIX", "RATE_LIMIT_DEFAULTS")
    other = create_app(TestingConfig, **{name: app.config[name] for name in names}, **overrides)
    try:
        yield other.test_client()
    finally:
        with other.app_context():
            db.engine.dispose()


def move_signing_clock(monkeypatch, moment):
    monkeypatch.setattr(signing, "utcnow", lambda: moment)


# --- what a token says ------------------------------------------------------------------------------

@pytest.mark.parametrize("caller", ["service key", "admin session"])
@pytest.mark.parametrize("body", ["plain", "jsonapi"])
def test_a_valid_answer_carries_a_token_that_the_jwks_verifies(client, make, account, service, owner, key, now,
                                                               secrets_seen, way_in, caller, body):
    headers, audience = service if caller == "service key" else (make.headers(account), f"user:{account.id}")
    attributes = {"key": key.secret, "scopes": ["llm:gpt-4o"], "token": True}
    document = attributes if body == "plain" else resource("api-key-verifications", attributes)
    response = client.post(URL, json=document, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    meta = response.get_json()["meta"]
    token = secrets_seen.add(meta["token"])
    assert meta["valid"] is True and meta["key"]["id"] == str(key.id)

    header = jwt.get_unverified_header(token)
    assert header == {"alg": "EdDSA", "typ": "JWT", "kid": header["kid"]} and header["kid"]
    claims = checked(client, token, audience)
    assert set(claims) == CLAIMS
    iat = math.floor(now.timestamp())
    assert claims == {**claims, "iss": "latchkey", "aud": audience, "sub": str(key.id), "owner": str(owner.id),
                      "scopes": ["llm:*", "files:read"], "code": "VALID", "iat": iat, "exp": iat + 300}
    again = token_of(client, headers, key.secret, secrets_seen)
    assert checked(client, again, audience)["jti"] != claims["jti"]


def test_the_jwks_is_public_cacheable_json_of_ed25519_keys(client, service, key, secrets_seen):
    assert client.get(JWKS).get_json() == {"keys": []}  # no key until a token is asked for
    token = token_of(client, service[0], key.secret, secrets_seen)
    response = client.get(JWKS)
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "public, max-age=300"
    [listed] = response.get_json()["keys"]
    assert set(listed) == {"kty", "crv", "x", "kid", "use", "alg"}
    assert listed == {**listed, "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": kid(token)}
    assert len(base64.urlsafe_b64decode(listed["x"] + "=")) == 32
    assert listed["kid"] == signing.thumbprint(listed["x"])


@pytest.mark.parametrize("config_overrides", [{"VERIFY_TOKEN_SECONDS": 60, "VERIFY_TOKEN_ISSUER": "auth.example"}])
def test_lifetime_and_issuer_come_from_the_configuration(client, service, key, now, secrets_seen):
    token = token_of(client, service[0], key.secret, secrets_seen)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == "auth.example" and claims["exp"] - claims["iat"] == 60


def test_a_token_never_outlives_the_keys_expiry(client, make, owner, service, now, secrets_seen):
    expires_at = now + 100 * SECOND + 0.7 * SECOND
    expiring = make.key(owner, expires_at=expires_at)
    claims = checked(client, token_of(client, service[0], expiring.secret, secrets_seen), service[1])
    assert claims["exp"] == math.floor(expires_at.timestamp()) and claims["exp"] <= expires_at.timestamp()
    later = make.key(owner, expires_at=now + 3600 * SECOND)
    claims = checked(client, token_of(client, service[0], later.secret, secrets_seen), service[1])
    assert claims["exp"] == claims["iat"] + 300


def test_a_token_of_a_replaced_secret_never_outlives_its_rotation_grace(client, make, owner, key, service, now,
                                                                        secrets_seen):
    response = call(client, "POST", f"/v1/api-keys/{key.id}/rotate", make.headers(owner), {"grace-period": 100})
    new_secret = register_secret(response, secrets_seen)
    grace_until = make.row(ApiKey, key.id)["previous_valid_until"]
    old = checked(client, token_of(client, service[0], key.secret, secrets_seen), service[1])
    assert old["exp"] == math.floor(grace_until.timestamp()) < old["iat"] + 300
    new = checked(client, token_of(client, service[0], new_secret, secrets_seen), service[1])
    assert new["exp"] == new["iat"] + 300 and new["sub"] == old["sub"] == str(key.id)


def test_a_revoked_keys_tokens_stay_valid_until_they_expire(client, make, owner, key, service, secrets_seen):
    """The documented trade-off of checking offline: VERIFY_TOKEN_SECONDS bounds it."""
    token = token_of(client, service[0], key.secret, secrets_seen)
    assert call(client, "POST", f"/v1/api-keys/{key.id}/revoke", make.headers(owner)).status_code == 200
    assert ask(client, service[0], key.secret)["code"] == "REVOKED"
    assert checked(client, token, service[1])["sub"] == str(key.id)


# --- when there is no token ---------------------------------------------------------------------------

@pytest.mark.parametrize("state, fields, code", [
    ({"status": "revoked"}, {}, "REVOKED"),
    ({"status": "suspended"}, {}, "SUSPENDED"),
    ({"expires_at": utcnow() - SECOND}, {}, "EXPIRED"),
    ({"allowed_ips": ["10.0.0.0/8"]}, {"ip": "203.0.113.7"}, "FORBIDDEN"),
    ({}, {"scopes": ["admin:access"]}, "INSUFFICIENT_SCOPES"),
    ({"quota_limit": 0, "quota_period": "day"}, {}, "QUOTA_EXCEEDED"),
    (None, {}, "NOT_FOUND"),
])
def test_no_token_on_an_invalid_answer(client, make, owner, service, way_in, state, fields, code):
    secret = make.key(owner, **state).secret if state is not None else "lk_" + "A" * 38
    meta = ask(client, service[0], secret, **fields)
    assert meta["valid"] is False and meta["code"] == code and "token" not in meta
    assert client.get(JWKS).get_json() == {"keys": []}  # nothing was signed, no key was made


@pytest.mark.parametrize("fields", [{}, {"token": False}])
def test_no_token_unless_asked_and_no_signing_work_then(client, service, key, monkeypatch, way_in, fields):
    def refuse(*args):
        raise AssertionError("a verification without a token signed something")

    monkeypatch.setattr(signing.Signer, "current", refuse)
    response = client.post(URL, json={"key": key.secret, **fields}, headers=service[0])
    assert response.status_code == 200 and response.get_json()["meta"]["valid"] is True
    assert "token" not in response.get_json()["meta"]


@pytest.mark.parametrize("token", ["true", 1, 0, None, [], {}])
@pytest.mark.parametrize("body", ["plain", "jsonapi"])
def test_a_token_that_is_not_a_boolean_is_422(client, service, key, way_in, token, body):
    attributes = {"key": key.secret, "token": token}
    document = attributes if body == "plain" else resource("api-key-verifications", attributes)
    assert_error(client.post(URL, json=document, headers=service[0]), 422, pointer="/data/attributes/token")


# --- signing keys: rotation, retirement, workers --------------------------------------------------------

def test_rotation_signs_with_a_new_key_and_old_tokens_verify_until_they_expire(app, client, make, account, service,
                                                                               key, secrets_seen, monkeypatch):
    first = token_of(client, service[0], key.secret, secrets_seen)
    output = rotate_signing_key(app)
    events = client.get("/v1/audit-events", headers=make.headers(account), query_string={"page[size]": 100})
    assert [item for item in events.get_json()["data"] if item["attributes"]["action"] == "signing-key.rotate"]
    second = token_of(client, service[0], key.secret, secrets_seen)  # this worker switches at once
    assert kid(second) != kid(first) and kid(second) in output and kid(first) in output
    assert listed_kids(client) == [kid(second), kid(first)]
    for token in (first, second):
        assert checked(client, token, service[1])["sub"] == str(key.id)

    with app.app_context():
        retired_at = db.session.scalar(db.select(SigningKey.retired_at).where(SigningKey.kid == kid(first)))
    leaves = retired_at + (300 + signing.RETIRE_MARGIN_SECONDS) * SECOND
    assert jwt.decode(first, options={"verify_signature": False})["exp"] < leaves.timestamp()
    move_signing_clock(monkeypatch, leaves - SECOND)
    assert listed_kids(client) == [kid(second), kid(first)]
    move_signing_clock(monkeypatch, leaves)
    assert listed_kids(client) == [kid(second)]
    with app.app_context():
        assert db.session.scalars(db.select(SigningKey.kid)).all() == [kid(second)]  # deleted, not only hidden
    with pytest.raises(KeyError):
        checked(client, first, service[1], verify_exp=False)
    assert checked(client, second, service[1], verify_exp=False)["sub"] == str(key.id)


def test_another_worker_signs_with_the_new_key_within_the_refresh_time(app, client, service, key, secrets_seen,
                                                                       timeline):
    with another_worker(app) as worker:
        first = token_of(worker, service[0], key.secret, secrets_seen)
        rotate_signing_key(app)
        current = kid(token_of(client, service[0], key.secret, secrets_seen))
        timeline.advance(signing.REFRESH_SECONDS - 0.5)
        stale = token_of(worker, service[0], key.secret, secrets_seen)
        assert kid(stale) == kid(first) != current
        assert checked(client, stale, service[1])["sub"] == str(key.id)  # still listed: it verifies
        timeline.advance(0.5)
        assert kid(token_of(worker, service[0], key.secret, secrets_seen)) == current


def test_two_first_keys_made_at_once_are_healed_by_the_listing(app, client, service, key, secrets_seen):
    """Two workers that each found no key made one: the older is retired (and stays listed)."""
    with app.app_context():
        signing.signer().make_key()
        signing.signer().make_key()
        with db.engine.begin() as connection:  # as if the second had not seen the first's commit
            connection.execute(db.update(SigningKey).values(retired_at=None))
    token = token_of(client, service[0], key.secret, secrets_seen)
    assert len(listed_kids(client)) == 2 and listed_kids(client)[0] == kid(token)
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).where(SigningKey.retired_at.is_(None))) == 1


# --- the private key: encrypted at rest, never logged -----------------------------------------------------

def _encodings(raw: bytes) -> list:
    private = Ed25519PrivateKey.from_private_bytes(raw)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return [raw.hex(), base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("="),
            str(raw)[2:-1], pem.splitlines()[1]]


def test_the_private_key_is_encrypted_at_rest_and_never_logged(app, client, service, key, secrets_seen, caplog):
    token = token_of(client, service[0], key.secret, secrets_seen)
    output = rotate_signing_key(app)
    later = token_of(client, service[0], key.secret, secrets_seen)
    with app.app_context():
        rows = db.session.execute(db.select(SigningKey.kid, SigningKey.public_key,
                                            SigningKey.encrypted_private_key)).all()
    box = signing.fernet(app.config["SECRET_KEY"])
    dump = dump_database(app)
    # The guard reads caplog.records at teardown, when they hold only the teardown's: read them here.
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert kid(token) in dump and kid(token) in logged  # neither is vacuous
    assert token not in logged and later not in logged
    for row in rows:
        raw = box.decrypt(row.encrypted_private_key)
        derived = Ed25519PrivateKey.from_private_bytes(raw).public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert base64.urlsafe_b64encode(derived).decode().rstrip("=") == row.public_key
        secrets_seen.add(*_encodings(raw))  # for the log guard (conftest), and checked here as well:
        assert not [text for text in _encodings(raw) if text in dump + logged + output]
        in_memory = signing.CurrentKey(row.kid, Ed25519PrivateKey.from_private_bytes(raw))
        assert repr(in_memory) == f"CurrentKey(kid={row.kid!r})"


def test_a_new_secret_key_makes_a_new_signing_key_and_keeps_the_old_one_listed(app, client, service, key,
                                                                              secrets_seen, caplog):
    first = token_of(client, service[0], key.secret, secrets_seen)
    with another_worker(app, SECRET_KEY="another-secret-key-0123456789-abcdefghij") as worker:
        second = token_of(worker, service[0], key.secret, secrets_seen)
    assert kid(second) != kid(first) and listed_kids(client) == [kid(second), kid(first)]
    assert any("cannot be decrypted" in record.getMessage() for record in caplog.records)
    for token in (first, second):
        assert checked(client, token, service[1])["sub"] == str(key.id)


def test_a_lifetime_that_is_not_positive_is_refused_at_start(app):
    with pytest.raises(RuntimeError, match="VERIFY_TOKEN_SECONDS"):
        create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=app.config["SQLALCHEMY_DATABASE_URI"],
                   VERIFY_TOKEN_SECONDS=0)
