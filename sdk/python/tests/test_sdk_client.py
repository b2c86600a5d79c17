"""Latchkey (the client) against a fake Latchkey on a local port: the cache and its re-checks, signed
answers, retries and Retry-After, the fail policies, and where the key may (not) be found."""
import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
from latchkey_client import (
    InvalidToken,
    Latchkey,
    LatchkeyRequestError,
    LatchkeyThrottled,
    LatchkeyUnavailable,
    Verification,
)
from sdk_fakes import Signer, refusal

KEY = "lk_" + "k" * 38


@pytest.fixture
def client(fake):
    with Latchkey(fake.url, "lk_service", cache_ttl=30, negative_ttl=30, retries=2, backoff=0.001) as client:
        yield client


def test_an_answer_is_typed_frozen_and_cached(client, fake):
    first = client.verify(KEY, ["llm:chat"], ip="203.0.113.7")
    assert isinstance(first, Verification) and first.valid and first.code == "VALID"
    assert (first.key_id, first.owner_id, first.scopes, first.budget_remaining, first.source) == (
        "42", "7", ("llm:*",), 99, "latchkey")
    with pytest.raises(AttributeError):
        first.valid = False
    assert fake.requests[0]["body"] == {"key": KEY, "scopes": ["llm:chat"], "ip": "203.0.113.7", "token": True}
    assert fake.requests[0]["service"] == "lk_service"
    second = client.verify(KEY, ["llm:chat"], ip="203.0.113.7")
    assert second.valid and second.source == "cache" and len(fake.requests) == 1
    # Another question about the same key is another entry.
    client.verify(KEY, ["llm:embed"], ip="203.0.113.7")
    client.verify(KEY, ["llm:chat"], ip="198.51.100.1")
    assert len(fake.requests) == 3


def test_answers_with_a_cost_are_never_cached_nor_served_from_the_cache(client, fake):
    client.verify(KEY, ["llm:chat"])
    answers = [client.verify(KEY, ["llm:chat"], cost=3) for _ in range(2)]
    assert [a.source for a in answers] == ["latchkey", "latchkey"] and len(fake.requests) == 3
    assert fake.requests[1]["body"] == {"key": KEY, "scopes": ["llm:chat"], "cost": 3}  # no token asked


def test_a_refusal_is_cached_for_negative_ttl_only(fake):
    fake.respond = lambda body: refusal("REVOKED")
    with Latchkey(fake.url, "lk_service", negative_ttl=0.2) as client:
        assert client.verify(KEY).code == "REVOKED"
        assert client.verify(KEY).source == "cache" and len(fake.requests) == 1
        time.sleep(0.25)
        assert client.verify(KEY).source == "latchkey" and len(fake.requests) == 2


def test_a_signed_answer_is_cached_no_longer_than_its_token_lives(fake):
    fake.respond = lambda body: fake.valid(body, lifetime=1)
    with Latchkey(fake.url, "lk_service", cache_ttl=60, leeway=0) as client:
        client.verify(KEY)
        (entry,) = client.cache.entries()
        assert entry.fresh_until - time.monotonic() <= 1.01
        assert entry.claims is not None and client.tokens.audience == "key:1"


@pytest.mark.parametrize("ends", ["rotation-grace-until", "expires-at"])
@pytest.mark.parametrize("policy", ["closed", "cached"])
def test_an_unsigned_answer_is_cached_no_longer_than_its_secret_works(fake, ends, policy):
    """Without a token to bound it, a valid answer is served from the cache (and, under
    fail="cached", kept) no later than the end of the checked secret's rotation grace or the key's
    expiry."""
    until = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()

    def valid(body):
        status, headers, document = fake.valid(body)
        document["meta"]["key"][ends] = until
        return status, headers, document

    fake.respond = valid
    with Latchkey(fake.url, "lk_service", cache_ttl=60, stale_ttl=60, fail=policy, tokens=False) as client:
        answer = client.verify(KEY)
        assert answer.token is None
        (entry,) = client.cache.entries()
        assert entry.fresh_until - time.monotonic() <= 1.01 and entry.usable_until - time.monotonic() <= 1.01


def test_a_cached_signed_answer_is_rechecked_on_every_use(client, fake, monkeypatch):
    client.verify(KEY)
    assert client.verify(KEY).source == "cache"
    (entry,) = client.cache.entries()
    monkeypatch.setattr(client.tokens, "_clock", lambda: entry.claims.exp + 1)  # the token has expired
    assert client.verify(KEY).source == "latchkey" and len(fake.requests) == 2


def test_a_cached_answer_whose_signing_key_is_withdrawn_is_not_served(client, fake):
    client.verify(KEY)  # signed by the fake's first key, and cached
    successor = Signer()
    fake.jwks, fake.signer = {"keys": [successor.jwk()]}, successor  # a rotation: the old key withdrawn
    client.tokens._fetched_at -= 60  # past refetch_interval
    client.verify("lk_" + "o" * 38)  # an answer signed under the new kid: the JWK set is fetched again
    assert fake.jwks_fetches == 2
    assert client.verify(KEY).source == "latchkey"  # what the withdrawn key signed is not served any more


def test_recheck_signature_recomputes_it_on_every_use(fake):
    with Latchkey(fake.url, "lk_service", recheck_signature=True) as client:
        client.verify(KEY)
        calls = []
        verify = client.tokens.verify
        client.tokens.verify = lambda token: calls.append(token) or verify(token)
        assert client.verify(KEY).source == "cache" and len(calls) == 1


@pytest.mark.parametrize("token", [
    lambda fake: fake.signer.token(sub="42")[:-6] + "AAAAAA",   # tampered
    lambda fake: fake.signer.token(sub="42", lifetime=-60),    # expired
    lambda fake: fake.signer.token(sub="42", aud="key:2"),     # another service's answer
    lambda fake: Signer().token(sub="42"),                     # unknown kid
    lambda fake: fake.signer.token(sub="43"),                  # about another key
])
def test_an_answer_whose_token_does_not_check_out_is_refused_and_not_cached(client, fake, token):
    client.verify("lk_" + "a" * 38)  # the audience is learned: key:1
    fake.respond = lambda body: fake.valid(body, token=token(fake))
    with pytest.raises(InvalidToken):
        client.verify(KEY)
    assert len(client.cache) == 1


def test_an_answer_is_served_but_not_cached_when_the_signing_keys_are_unreachable(client, fake, caplog):
    def broken(url):
        raise LatchkeyUnavailable("down")

    client.tokens._fetch = broken
    assert client.verify(KEY).valid and len(client.cache) == 0
    assert "not cached" in caplog.text


def test_check_token_verifies_a_signed_answer_offline(client, fake):
    token = client.verify(KEY).token
    answer = client.check_token(token)
    assert (answer.valid, answer.key_id, answer.owner_id, answer.source) == (True, "42", "7", "token")
    with pytest.raises(InvalidToken):
        client.check_token(token[:-4] + "AAAA")


# --- retries --------------------------------------------------------------------------------------

def answers(*responses):
    """A fake's `respond` that gives these answers in turn, then valid ones."""
    queue = list(responses)
    return lambda body: queue.pop(0) if queue else (200, {}, {"meta": {"valid": True, "code": "VALID",
                                                                        "key": {"id": "42"}}})


def test_a_503_is_retried_after_its_retry_after(fake):
    fake.respond = answers((503, {"Retry-After": "1"}, {"errors": [{"status": "503"}]}))
    with Latchkey(fake.url, "lk_service", max_retry_after=2) as client:
        assert client.verify(KEY).valid
    first, second = fake.requests
    assert 1.0 <= second["at"] - first["at"] < 1.5


def test_a_429_whose_retry_after_exceeds_the_cap_is_not_waited_for(fake):
    fake.respond = answers((429, {"Retry-After": "60"}, {"errors": [{"status": "429", "code": "RATE_LIMITED"}]}))
    with Latchkey(fake.url, "lk_service", max_retry_after=2) as client:
        started = time.monotonic()
        with pytest.raises(LatchkeyThrottled) as raised:
            client.verify(KEY)
    assert time.monotonic() - started < 0.5 and len(fake.requests) == 1
    assert (raised.value.status, raised.value.code, raised.value.retry_after) == (429, "RATE_LIMITED", 60)


def test_a_429_is_retried_after_its_retry_after(fake):
    fake.respond = answers((429, {"Retry-After": "0"}, {"errors": [{"status": "429", "code": "QUOTA_EXCEEDED"}]}))
    with Latchkey(fake.url, "lk_service") as client:
        assert client.verify(KEY).valid and len(fake.requests) == 2


@pytest.mark.parametrize("policy", ["closed", "open", "cached"])
@pytest.mark.parametrize("code", ["RATE_LIMITED", "QUOTA_EXCEEDED"])
def test_a_429_after_the_retries_refuses_the_service_whatever_the_fail_policy(fake, policy, code):
    """Latchkey is up and refuses this service (its failed-authentication limit: a wrong or revoked
    service key; its key's quota, which junk keys can spend): no policy may let requests through."""
    with Latchkey(fake.url, "lk_service", fail=policy, cache_ttl=0.05, stale_ttl=60, retries=1) as client:
        assert client.verify(KEY).valid  # cached, for fail="cached"
        time.sleep(0.06)
        fake.respond = lambda body: (429, {"Retry-After": "0"}, {"errors": [{"status": "429", "code": code}]})
        with pytest.raises(LatchkeyThrottled) as raised:
            client.verify(KEY)
        assert not isinstance(raised.value, LatchkeyUnavailable)
        assert (raised.value.status, raised.value.code) == (429, code) and len(fake.requests) == 3


def test_5xx_answers_are_retried_with_backoff_then_unavailable(fake):
    fake.respond = lambda body: (500, {}, {"errors": [{"status": "500"}]})
    sleeps = []
    with Latchkey(fake.url, "lk_service", retries=3, backoff=0.01) as client:
        client._sleep = sleeps.append
        with pytest.raises(LatchkeyUnavailable):
            client.verify(KEY)
        assert len(fake.requests) == 4 and len(sleeps) == 3
        assert all(0 <= delay <= 0.01 * 2 ** attempt for attempt, delay in enumerate(sleeps))
        # With a cost, a request that may have been counted is not sent again.
        with pytest.raises(LatchkeyUnavailable):
            client.verify(KEY, cost=5)
        assert len(fake.requests) == 5


def test_a_503_is_retried_even_with_a_cost_since_latchkey_counted_nothing(fake):
    fake.respond = answers((503, {"Retry-After": "0"}, {"errors": [{"status": "503"}]}))
    with Latchkey(fake.url, "lk_service") as client:
        assert client.verify(KEY, cost=5).valid and len(fake.requests) == 2


def test_the_service_being_refused_is_a_request_error_never_retried_nor_let_through(fake):
    fake.respond = lambda body: (403, {}, {"errors": [{"status": "403", "code": "INSUFFICIENT_SCOPES",
                                                       "detail": "needs keys:verify"}]})
    with Latchkey(fake.url, "lk_service", fail="open") as client:
        with pytest.raises(LatchkeyRequestError) as raised:
            client.verify(KEY)
    assert (raised.value.status, raised.value.code) == (403, "INSUFFICIENT_SCOPES") and len(fake.requests) == 1


# --- fail policies ------------------------------------------------------------------------------

@pytest.mark.parametrize("policy", ["closed", "open", "cached"])
def test_fail_policies_when_latchkey_is_unreachable(fake, policy, caplog):
    with Latchkey(fake.url, "lk_service", fail=policy, cache_ttl=0.1, stale_ttl=30, retries=1,
                  backoff=0.001) as client:
        assert client.verify(KEY).valid
        fake.stop()
        time.sleep(0.15)  # the cached answer is no longer fresh
        other = "lk_" + "z" * 38
        if policy == "closed":
            with pytest.raises(LatchkeyUnavailable):
                client.verify(KEY)
        elif policy == "open":
            for key in (KEY, other):
                answer = client.verify(key)
                assert (answer.valid, answer.code, answer.unverified, answer.key_id) == (True, "UNVERIFIED", True,
                                                                                         None)
        else:
            answer = client.verify(KEY)
            assert (answer.valid, answer.source, answer.key_id) == (True, "stale-cache", "42")
            with pytest.raises(LatchkeyUnavailable):
                client.verify(other)
            with pytest.raises(LatchkeyUnavailable):
                client.verify(KEY, cost=1)  # a cost must be counted by Latchkey
    assert [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()][:1], "the outage is logged"


# --- where the key is ---------------------------------------------------------------------------

def test_the_raw_key_is_in_no_cache_key_entry_or_log_line(client, fake, caplog):
    caplog.set_level(logging.DEBUG)
    fake.respond = answers(refusal("NOT_FOUND"))
    client.verify(KEY, ["llm:chat"])
    client.verify(KEY + "x", ["llm:chat"], ip="203.0.113.7")
    client.verify(KEY + "x", ["llm:chat"], ip="203.0.113.7")
    assert len(client.cache) == 2
    for digest, scopes, _ in client.cache.keys():
        assert isinstance(digest, bytes) and len(digest) == 32 and scopes == ("llm:chat",)
    everything = repr(client.cache.keys()) + repr(client.cache.entries()) + repr(client) + caplog.text
    assert KEY not in everything and KEY[3:20] not in everything
    assert "sha256:" in caplog.text  # keys are named by a digest prefix


def test_from_env_reads_latchkey_variables_and_arguments_win(fake):
    environ = {"LATCHKEY_URL": fake.url + "/", "LATCHKEY_SERVICE_KEY": "lk_service", "LATCHKEY_FAIL": "cached",
               "LATCHKEY_CACHE_TTL": "7.5", "LATCHKEY_RETRIES": "4", "LATCHKEY_TOKENS": "off"}
    client = Latchkey.from_env(environ, retries=1)
    assert (client.url, client.fail, client.cache_ttl, client.retries, client.use_tokens) == (
        fake.url, "cached", 7.5, 1, False)
    assert "lk_service" not in repr(client)
    with pytest.raises(Exception, match="LATCHKEY_SERVICE_KEY"):
        Latchkey.from_env({"LATCHKEY_URL": fake.url})
