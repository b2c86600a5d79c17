"""The Python SDK (sdk/python, package latchkey_client) against a real Latchkey under gunicorn, through
the example service it protects (examples/protected_service.py, in process with Flask's test client).

Every verification code becomes its HTTP answer; a revoked key is refused within the cache's
lifetime; Latchkey stopped gives each fail policy, and Latchkey refusing the service itself (429)
lets nobody through under any; no raw key is kept in the cache or logged; a Retry-After beyond the
cap is not waited for; a cached answer ends with its secret's rotation grace or expiry; signed
answers check out end to end, and tampered, expired, other-audience and unknown-kid tokens do not;
a signing-key rotation is picked up at once. The SDK's own unit tests (fake Latchkey, tokens signed
with keys made in the test) are in sdk/python/tests, collected by the same pytest run.
"""
import json
import logging
import re
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from datetime import timedelta
from types import SimpleNamespace

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from latchkey_client import CODES, FAIL_POLICIES, STATUS_OF, InvalidToken, Latchkey, LatchkeyThrottled
from sqlalchemy import select

from app.extensions import db
from app.models import SigningKey
from app.models.types import utcnow
from app.services import signing
from examples.protected_service import create_app
from tests.helpers import JSONAPI, Seeder, delete_keys
from tests.servers import (
    ROOT,
    fresh_database,
    gunicorn,
    redis_url_or_none,
    run_migrations,
    service_env,
    wait_until,
)

CACHE_TTL = 2.0  # the protected service's cache lifetime in these tests
KEY_CACHE_SECONDS = 1.0  # Latchkey's own: a revocation reaches every worker within it
AUTH_FAILURES = "3 per minute"  # Latchkey's limit of failed verification callers per address


@pytest.fixture(scope="module")
def latchkey(tmp_path_factory):
    """A real Latchkey (gunicorn; 2 workers on Redis, 1 on memory://, where workers count alone),
    an admin's service key with keys:verify, and an owner whose keys the tests check."""
    storage = redis_url_or_none() or "memory://"
    with fresh_database(tmp_path_factory.mktemp("sdk")) as database_url:
        env = service_env(database_url, storage, RATE_LIMIT_AUTH_FAILURES=AUTH_FAILURES)
        run_migrations(env)
        seeder = Seeder(env)
        try:
            admin_id, _ = seeder.user("sdk-admin@example.com", admin=True)
            service = seeder.key(admin_id, scopes=["keys:verify"])
            owner_id, owner_token = seeder.user("sdk-owner@example.com")
            with gunicorn(env, workers=2 if storage.startswith("redis") else 1) as base:
                yield SimpleNamespace(base=base, env=env, seeder=seeder, admin_id=admin_id, service=service,
                                      owner_id=owner_id, owner_token=owner_token)
        finally:
            seeder.close()
            delete_keys(storage, env["RATELIMIT_KEY_PREFIX"])


@pytest.fixture
def make_key(latchkey, secrets_seen):
    """Create a key of the owner's (scopes llm:* unless told) and return its secret, which the
    conftest's log guard then looks for in every log record."""
    secrets_seen.add(latchkey.service, latchkey.owner_token)

    def make(**attributes):
        return secrets_seen.add(latchkey.seeder.key(latchkey.owner_id, **{"scopes": ["llm:*"], **attributes}))

    return make


@pytest.fixture
def client(latchkey):
    with Latchkey(latchkey.base, latchkey.service, cache_ttl=CACHE_TTL, negative_ttl=0.5) as client:
        yield client


@pytest.fixture
def web(client):
    """A test client of the example service, protected by `client`."""
    return create_app(client).test_client()


def key_header(secret):
    return {"X-API-Key": secret}


def error_code(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == JSONAPI
    (error,) = response.get_json(force=True)["errors"]
    assert error["status"] == str(status) and error["title"] and error["detail"]
    return error["code"]


# Each code: the key's attributes, and the requests (path, body) that end with that answer. The
# limits need a second request, and the cost route: an answer asked with a cost is never cached.
CASES = {
    "VALID": ({}, [("/v1/hello", None)]),
    "NOT_FOUND": (None, [("/v1/hello", None)]),
    "REVOKED": ({"status": "revoked"}, [("/v1/hello", None)]),
    "SUSPENDED": ({"status": "suspended"}, [("/v1/hello", None)]),
    "EXPIRED": ({"expires_at": utcnow() - timedelta(seconds=1)}, [("/v1/hello", None)]),
    "FORBIDDEN": ({"allowed_ips": ["10.0.0.0/8"]}, [("/v1/hello", None)]),  # the test client is 127.0.0.1
    "INSUFFICIENT_SCOPES": ({"scopes": ["rag:search"]}, [("/v1/hello", None)]),
    "RATE_LIMITED": ({"rate_limit": "1/minute"}, [("/v1/chat", {"max-tokens": 1})] * 2),
    "QUOTA_EXCEEDED": ({"quota_limit": 1, "quota_period": "day"}, [("/v1/chat", {"max-tokens": 1})] * 2),
    "BUDGET_EXCEEDED": ({"budget_limit": 3, "budget_period": "month"}, [("/v1/chat", {"max-tokens": 4})]),
}


def test_every_code_is_covered():
    assert set(CASES) == set(CODES)


@pytest.mark.parametrize("code", list(CASES))
def test_every_verification_code_becomes_its_http_answer(web, make_key, code):
    attributes, calls = CASES[code]
    secret = make_key(**attributes) if attributes is not None else "lk_" + uuid.uuid4().hex + "000000"
    for path, body in calls:
        response = web.post(path, json=body, headers=key_header(secret)) if body else web.get(path,
                                                                                               headers=key_header(secret))
    if code == "VALID":
        assert response.status_code == 200 and response.get_json()["data"]["scopes"] == ["llm:*"]
        return
    assert error_code(response, STATUS_OF[code]) == code
    expected = {401: "WWW-Authenticate", 429: "Retry-After"}.get(STATUS_OF[code])
    if expected:
        assert expected in response.headers
    if code == "RATE_LIMITED":
        assert response.headers["Retry-After"] == "60"  # the window of 1/minute: at most that long
    if code in ("QUOTA_EXCEEDED", "BUDGET_EXCEEDED"):
        assert 1 <= int(response.headers["Retry-After"]) <= 31 * 86400  # until the day's or month's reset


def test_a_valid_key_is_served_from_either_header_then_from_the_cache(web, make_key):
    secret = make_key()
    first = web.get("/v1/hello", headers={"Authorization": f"Bearer {secret}"})
    assert first.status_code == 200 and first.get_json()["data"]["source"] == "latchkey"
    again = web.get("/v1/hello", headers=key_header(secret))
    assert again.status_code == 200 and again.get_json()["data"]["source"] == "cache"


def test_requests_without_a_key_are_refused_without_asking(web, client):
    assert error_code(web.get("/v1/hello"), 401) == "UNAUTHENTICATED"
    assert error_code(web.get("/v1/hello", headers={"Authorization": "Basic YTpi"}), 401) == "INVALID_AUTHORIZATION"
    assert len(client.cache) == 0


def test_every_costly_request_is_counted_by_latchkey(web, make_key):
    secret = make_key(budget_limit=10, budget_period="month")
    remaining = [web.post("/v1/chat", json={"max-tokens": 3}, headers=key_header(secret)).get_json()["data"]
                 for _ in range(3)]
    assert [(r["budget-remaining"], r["source"]) for r in remaining] == [(7, "latchkey"), (4, "latchkey"),
                                                                          (1, "latchkey")]
    assert error_code(web.post("/v1/chat", json={"max-tokens": 3}, headers=key_header(secret)), 429) == \
        "BUDGET_EXCEEDED"


def test_a_revoked_key_is_refused_within_the_cache_lifetime(latchkey, web, make_key):
    secret = make_key()
    assert web.get("/v1/hello", headers=key_header(secret)).status_code == 200
    key_id = latchkey.seeder.key_id(secret)
    revoked = requests.post(f"{latchkey.base}/v1/api-keys/{key_id}/revoke", timeout=10,
                            headers={"Authorization": f"Bearer {latchkey.owner_token}"})
    assert revoked.status_code == 200, revoked.text
    started = time.monotonic()

    def refused():
        return web.get("/v1/hello", headers=key_header(secret)).status_code == 401

    wait_until(refused, CACHE_TTL + KEY_CACHE_SECONDS + 2, "the revoked key to be refused")
    assert time.monotonic() - started <= CACHE_TTL + KEY_CACHE_SECONDS + 0.5
    assert error_code(web.get("/v1/hello", headers=key_header(secret)), 401) == "REVOKED"


def test_latchkey_stopped_gives_each_fail_policy(latchkey, make_key):
    """A Latchkey of this test's own (same database), stopped after each policy's client has
    cached an answer, which is no longer fresh: closed refuses (503), open lets every request
    through flagged unverified, cached serves the cached answer (and refuses the others)."""
    cached, other = make_key(), make_key()
    with ExitStack() as running:
        base = running.enter_context(gunicorn(latchkey.env, workers=1))
        clients = {policy: running.enter_context(Latchkey(base, latchkey.service, fail=policy, cache_ttl=0.2,
                                                          stale_ttl=60, retries=1, backoff=0.01))
                   for policy in FAIL_POLICIES}
        webs = {policy: create_app(sdk).test_client() for policy, sdk in clients.items()}
        for policy_web in webs.values():
            assert policy_web.get("/v1/hello", headers=key_header(cached)).status_code == 200
        running.pop_all().close()  # gunicorn stops here; the clients stay open
    time.sleep(0.25)  # past cache_ttl: every cached answer is stale
    started = time.monotonic()

    closed = webs["closed"].get("/v1/hello", headers=key_header(cached))
    assert error_code(closed, 503) == "LATCHKEY_UNAVAILABLE" and int(closed.headers["Retry-After"]) >= 1

    for secret in (cached, other, "lk_" + "n" * 38):
        opened = webs["open"].get("/v1/hello", headers=key_header(secret))
        assert opened.status_code == 200
        assert opened.get_json()["data"] == {"key-id": None, "owner-id": None, "scopes": [], "source": "fail-open",
                                             "unverified": True, "budget-remaining": None}

    stale = webs["cached"].get("/v1/hello", headers=key_header(cached))
    assert stale.status_code == 200 and stale.get_json()["data"]["source"] == "stale-cache"
    assert error_code(webs["cached"].get("/v1/hello", headers=key_header(other)), 503) == "LATCHKEY_UNAVAILABLE"
    assert error_code(webs["cached"].post("/v1/chat", json={}, headers=key_header(cached)), 503) == \
        "LATCHKEY_UNAVAILABLE"  # a cost must be counted by Latchkey: never from a cache
    assert time.monotonic() - started < 2  # a refused connection fails fast, retries included
    for sdk in clients.values():
        sdk.close()


def test_no_raw_key_is_kept_in_the_cache_or_logged(latchkey, client, web, make_key, caplog):
    caplog.set_level(logging.DEBUG)
    valid, revoked = make_key(), make_key(status="revoked")
    unknown = "lk_" + "u" * 38
    for secret in (valid, revoked, unknown, valid):
        web.get("/v1/hello", headers=key_header(secret))
    web.post("/v1/chat", json={"max-tokens": 1}, headers=key_header(valid))
    assert len(client.cache) == 3
    kept = repr(client.cache.keys()) + repr(client.cache.entries()) + repr(vars(client))
    for secret in (valid, revoked, unknown):
        assert secret not in kept and secret[3:15] not in kept
    for digest, scopes, ip in client.cache.keys():
        assert len(digest) == 32 and scopes == ("llm:chat",) and ip == "127.0.0.1"
    assert "sha256:" in caplog.text
    assert not any(secret in caplog.text for secret in (valid, revoked, unknown, latchkey.service))
    # (the conftest's guard also checks every log record for the keys made here)


def test_a_retry_after_beyond_the_cap_is_not_waited_for(latchkey, secrets_seen):
    """Latchkey answers 429 with Retry-After (the rest of its minute) once an address has failed
    AUTH_FAILURES authentications: the SDK does not wait that long, it reports it at once."""
    wrong = secrets_seen.add("lk_" + uuid.uuid4().hex + "wrong0")
    with Latchkey(latchkey.base, wrong, max_retry_after=2, retries=2) as bad:
        outcomes = []
        for _ in range(5):
            started = time.monotonic()
            try:
                bad.verify("lk_" + "x" * 38)
            except LatchkeyThrottled as refused:
                outcomes.append((refused.status, time.monotonic() - started, refused.retry_after))
            except Exception as error:  # noqa: BLE001 -- the 401s before the limit
                outcomes.append((getattr(error, "status", None), time.monotonic() - started, None))
    limited = [outcome for outcome in outcomes if outcome[0] == 429]
    assert limited, outcomes
    assert all(seconds < 1 and retry_after > 2 for _, seconds, retry_after in limited), limited


# --- signed answers end to end --------------------------------------------------------------------

def test_signed_answers_from_the_real_server(latchkey, client, web, make_key):
    secret = make_key()
    answer = client.verify(secret, ["llm:chat"])
    assert answer.token is not None, "Latchkey gave no signed answer to a service that asked for one"
    header = jwt.get_unverified_header(answer.token)
    claims = jwt.decode(answer.token, options={"verify_signature": False})
    service_id = latchkey.seeder.key_id(latchkey.service)
    assert header["alg"] == "EdDSA" and header["kid"]
    assert (claims["aud"], claims["iss"], claims["sub"], claims["code"]) == (f"key:{service_id}", "latchkey",
                                                                             answer.key_id, "VALID")
    assert client.tokens.audience == f"key:{service_id}"
    (entry,) = client.cache.entries()
    assert entry.claims is not None and entry.fresh_until - time.monotonic() <= min(CACHE_TTL, claims["exp"] -
                                                                                     time.time()) + 0.1
    assert client.verify(secret, ["llm:chat"]).source == "cache"
    assert client.check_token(answer.token).key_id == answer.key_id
    with pytest.raises(InvalidToken):
        client.check_token(answer.token[:-4] + ("AAAA" if not answer.token.endswith("AAAA") else "BBBB"))
    jwks = requests.get(f"{latchkey.base}/.well-known/jwks.json", timeout=10).json()
    assert header["kid"] in {key["kid"] for key in jwks["keys"]}


def signed_again(latchkey, token, **changes):
    """`token` with `changes` to its claims, signed again by the very Latchkey key that signed it (read
    from the server's database, decrypted with its SECRET_KEY): the signature holds, the changed
    claims are all that is wrong."""
    kid = jwt.get_unverified_header(token)["kid"]
    with latchkey.seeder.app.app_context():
        encrypted = db.session.scalar(select(SigningKey.encrypted_private_key).where(SigningKey.kid == kid))
    private = Ed25519PrivateKey.from_private_bytes(signing.fernet(latchkey.env["SECRET_KEY"]).decrypt(encrypted))
    claims = {**jwt.decode(token, options={"verify_signature": False}), **changes}
    return jwt.encode(claims, private, algorithm="EdDSA", headers={"kid": kid})


def with_payload(token, **changes):
    """`token` with `changes` to its claims and Latchkey's signature kept as it was."""
    header, _, signature = token.split(".")
    claims = {**jwt.decode(token, options={"verify_signature": False}), **changes}
    payload = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    return f"{header}.{payload}.{signature}"


def a_stranger_signs(token):
    """`token`'s claims signed by a key Latchkey never had, under a kid it never published."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": "not-latchkeys-kid"})


# A real token from Latchkey, changed: how, and what the SDK's local check says.
FORGERIES = {
    "another key's id, signature kept": (lambda lk, token: with_payload(token, sub="999999"), "Signature"),
    "more scopes, signature kept": (lambda lk, token: with_payload(token, scopes=["*"]), "Signature"),
    "a longer life, signature kept": (lambda lk, token: with_payload(token, exp=int(time.time()) + 86400),
                                      "Signature"),
    "signature changed": (lambda lk, token: token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"),
                          "Signature"),
    "expired, signed by Latchkey's key": (lambda lk, token: signed_again(lk, token, iat=int(time.time()) - 120,
                                                                         exp=int(time.time()) - 60), "Expired"),
    "another audience, signed by Latchkey's key": (lambda lk, token: signed_again(lk, token, aud="key:999999"),
                                                   "Audience"),
    "unknown kid": (lambda lk, token: a_stranger_signs(token), "unknown signing key"),
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_a_changed_token_is_refused_by_the_local_check(latchkey, client, make_key, forgery):
    secret = make_key()
    answer = client.verify(secret, ["llm:chat"])
    assert client.check_token(signed_again(latchkey, answer.token)).key_id == answer.key_id  # the helper is sound
    forge, refusal = FORGERIES[forgery]
    forged = forge(latchkey, answer.token)
    fetches = client.tokens.fetches
    for _ in range(2):
        with pytest.raises(InvalidToken, match=refusal):
            client.check_token(forged)
    assert client.tokens.fetches - fetches == (1 if forgery == "unknown kid" else 0)  # a stranger's kid: once


def test_a_token_of_another_service_is_refused(latchkey, client, make_key, secrets_seen):
    """A real token, signed by Latchkey for another service (its audience), is not this service's."""
    other = secrets_seen.add(latchkey.seeder.key(latchkey.admin_id, scopes=["keys:verify"]))
    secret = make_key()
    client.verify(secret, ["llm:chat"])  # this service's audience is learned
    with Latchkey(latchkey.base, other) as elsewhere:
        theirs = elsewhere.verify(secret, ["llm:chat"]).token
    assert jwt.decode(theirs, options={"verify_signature": False})["aud"] != client.tokens.audience
    with pytest.raises(InvalidToken, match="Audience"):
        client.check_token(theirs)


def test_a_cached_answer_whose_token_expired_is_not_served(client, web, make_key, monkeypatch):
    secret = make_key()
    assert web.get("/v1/hello", headers=key_header(secret)).get_json()["data"]["source"] == "latchkey"
    assert web.get("/v1/hello", headers=key_header(secret)).get_json()["data"]["source"] == "cache"
    (entry,) = client.cache.entries()
    monkeypatch.setattr(client.tokens, "_clock", lambda: entry.claims.exp + 1)  # past the token's exp
    again = web.get("/v1/hello", headers=key_header(secret))
    assert again.status_code == 200 and again.get_json()["data"]["source"] == "latchkey"


def test_a_signing_key_rotation_is_picked_up_at_once(latchkey, make_key, monkeypatch):
    """`manage.py tokens rotate-signing-key` on the server's database: once Latchkey's workers sign
    with the new key (within signing.REFRESH_SECONDS), the first answer under its kid refetches the
    JWK set at once and is served; an answer cached before the rotation is still served from the
    cache, until its token expires."""
    before, after = make_key(), make_key()
    with Latchkey(latchkey.base, latchkey.service, cache_ttl=60) as client:
        web = create_app(client).test_client()
        assert web.get("/v1/hello", headers=key_header(before)).status_code == 200
        (cached,) = client.cache.entries()
        rotated = subprocess.run([sys.executable, "manage.py", "tokens", "rotate-signing-key"], cwd=ROOT,
                                 env=latchkey.env, capture_output=True, text=True, timeout=120)
        assert rotated.returncode == 0, rotated.stderr[-2000:]
        new_kid = re.search(r"Signing key (\S+) now signs", rotated.stdout).group(1)
        assert new_kid != cached.claims.kid
        time.sleep(signing.REFRESH_SECONDS + 0.5)  # every worker signs its next token with the new key
        fetches = client.tokens.fetches

        served = web.get("/v1/hello", headers=key_header(after))
        assert served.status_code == 200, served.get_data(as_text=True)
        assert served.get_json()["data"]["source"] == "latchkey"
        (entry,) = [e for e in client.cache.entries() if e.answer.key_id == str(latchkey.seeder.key_id(after))]
        assert entry.claims.kid == new_kid and client.tokens.fetches == fetches + 1
        assert web.get("/v1/hello", headers=key_header(after)).get_json()["data"]["source"] == "cache"

        old = web.get("/v1/hello", headers=key_header(before))
        assert old.status_code == 200 and old.get_json()["data"]["source"] == "cache"  # the old key is still listed
        monkeypatch.setattr(client.tokens, "_clock", lambda: cached.claims.exp + 1)
        expired = web.get("/v1/hello", headers=key_header(before))
        assert expired.status_code == 200 and expired.get_json()["data"]["source"] == "latchkey"
        assert client.tokens.fetches == fetches + 1


# --- Latchkey refusing the service itself ----------------------------------------------------------

@pytest.mark.parametrize("policy", ["open", "cached"])
@pytest.mark.parametrize("trouble", ["revoked service key", "service key's quota spent"])
def test_latchkey_refusing_the_service_lets_nobody_through(latchkey, make_key, secrets_seen, policy, trouble):
    """Latchkey answers 429 to a service whose key is revoked or wrong, once its address is over
    AUTH_FAILURES (RATE_LIMITED), and to a service whose key's own quota is spent (QUOTA_EXCEEDED:
    junk keys spend it too). Latchkey is up: neither fail="open" nor fail="cached" lets a request
    through on that; the service answers 503 LATCHKEY_THROTTLED, never 200."""
    valid = make_key()
    if trouble == "revoked service key":
        service = latchkey.seeder.key(latchkey.admin_id, scopes=["keys:verify"], status="revoked")
    else:
        service = latchkey.seeder.key(latchkey.admin_id, scopes=["keys:verify"], quota_limit=2, quota_period="day")
    secrets_seen.add(service)
    with Latchkey(latchkey.base, service, fail=policy, cache_ttl=0.2, stale_ttl=60, retries=1) as client:
        web = create_app(client).test_client()
        if trouble == "service key's quota spent":
            first = web.get("/v1/hello", headers=key_header(valid))  # counted: 1 of 2, and cached
            assert first.status_code == 200 and first.get_json()["data"]["source"] == "latchkey"
            assert error_code(web.get("/v1/hello", headers=key_header("lk_" + "j" * 38)), 401) == "NOT_FOUND"
            time.sleep(0.25)  # the cached answer is stale: fail="cached" would serve it were Latchkey down
        answers = []
        for attempt in range(12):
            secret = valid if attempt % 2 == 0 else "lk_" + uuid.uuid4().hex + "junk00"
            response = web.get("/v1/hello", headers=key_header(secret))
            assert response.status_code != 200, response.get_data(as_text=True)
            answers.append((response.status_code, response.get_json(force=True)["errors"][0]["code"]))
            if response.status_code == 503:
                break
        # A revoked service key is a 401 (500 LATCHKEY_ERROR here) until the address is over the limit.
        assert set(answers[:-1]) <= {(500, "LATCHKEY_ERROR")}, answers
        assert error_code(response, 503) == "LATCHKEY_THROTTLED" and int(response.headers["Retry-After"]) >= 1


# --- the cache ends with the secret ----------------------------------------------------------------

@pytest.mark.parametrize("ends", ["rotation grace", "expiry"])
def test_an_unsigned_cached_answer_ends_when_its_secret_stops_working(latchkey, make_key, secrets_seen, ends):
    """Without a token to bound it (tokens=False), a cached answer is not served past the end of the
    rotation grace of the secret it checked, nor past the key's expiry, however long cache_ttl."""
    if ends == "expiry":
        secret = make_key(expires_at=utcnow() + timedelta(seconds=2))
    else:
        secret = make_key()
        rotated = requests.post(
            f"{latchkey.base}/v1/api-keys/{latchkey.seeder.key_id(secret)}/rotate", timeout=10,
            headers={"Authorization": f"Bearer {latchkey.owner_token}", "Content-Type": JSONAPI},
            json={"data": {"type": "api-keys", "attributes": {"grace-period": 2}}})
        assert rotated.status_code == 201, rotated.text
        secrets_seen.add(rotated.json()["data"]["attributes"]["secret"])
    with Latchkey(latchkey.base, latchkey.service, tokens=False, cache_ttl=60) as client:
        web = create_app(client).test_client()
        assert web.get("/v1/hello", headers=key_header(secret)).status_code == 200
        assert web.get("/v1/hello", headers=key_header(secret)).get_json()["data"]["source"] == "cache"
        (entry,) = client.cache.entries()
        assert entry.claims is None and entry.fresh_until - time.monotonic() <= 2
        if ends == "rotation grace":
            assert entry.answer.rotation_grace_until is not None
        wait_until(lambda: web.get("/v1/hello", headers=key_header(secret)).status_code == 401, 4,
                   "the cached answer to end with the secret")
