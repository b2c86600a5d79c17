"""TokenVerifier: Latchkey's signed answers, checked against a JWK set made here (the fetch is a
function that counts its calls), with keys that sign tokens in the tests."""
import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest
from latchkey_client import InvalidToken, LatchkeyUnavailable, TokenVerifier
from sdk_fakes import SERVICE_AUDIENCE, Signer


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def jwks(signer):
    """The JWK set the fetch returns (tests change it), and the fetches made."""
    state = {"keys": [signer.jwk()], "fetches": 0}
    return state


@pytest.fixture
def monotonic():
    return Clock()


@pytest.fixture
def verifier(jwks, monotonic):
    def fetch(url):
        jwks["fetches"] += 1
        return {"keys": list(jwks["keys"])}

    return TokenVerifier("http://latchkey.test/.well-known/jwks.json", fetch, monotonic=monotonic)


def resign_payload(token, **changes):
    """The token with its payload changed and the original signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    encoded = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{encoded}.{signature}"


def test_a_valid_token_gives_its_claims_and_teaches_the_audience(verifier, signer):
    claims = verifier.verify(signer.token(sub="42", scopes=["llm:*"]))
    assert (claims.sub, claims.owner, claims.scopes, claims.code, claims.kid) == ("42", "7", ("llm:*",), "VALID",
                                                                                  signer.kid)
    assert verifier.audience == SERVICE_AUDIENCE
    assert verifier.still_valid(claims)


@pytest.mark.parametrize("tamper", [
    lambda token: resign_payload(token, sub="43"),                       # another key's id
    lambda token: resign_payload(token, scopes=["admin:*"]),             # more scopes
    lambda token: resign_payload(token, exp=int(time.time()) + 86400),   # a longer life
    lambda token: token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"),  # the signature
])
def test_a_tampered_token_is_refused(verifier, signer, tamper):
    with pytest.raises(InvalidToken, match="Signature"):
        verifier.verify(tamper(signer.token()))


def test_an_expired_token_is_refused(verifier, signer):
    with pytest.raises(InvalidToken, match="Expired"):
        verifier.verify(signer.token(lifetime=-10))  # past the 5 s leeway


def test_a_token_for_another_audience_is_refused_once_the_audience_is_known(verifier, signer):
    verifier.verify(signer.token())
    with pytest.raises(InvalidToken, match="Audience"):
        verifier.verify(signer.token(aud="key:2"))


def test_a_configured_audience_is_required_from_the_first_token(jwks, signer):
    verifier = TokenVerifier("http://x/jwks", lambda url: {"keys": jwks["keys"]}, audience="key:9")
    with pytest.raises(InvalidToken, match="Audience"):
        verifier.verify(signer.token())
    assert verifier.verify(signer.token(aud="key:9")).aud == "key:9"


def test_an_audience_must_be_one_string(verifier, signer):
    with pytest.raises(InvalidToken, match="one string"):
        verifier.verify(signer.token(aud=[SERVICE_AUDIENCE, "key:2"]))


def test_another_issuer_is_refused(verifier, signer):
    with pytest.raises(InvalidToken, match="Issuer"):
        verifier.verify(signer.token(iss="someone-else"))


@pytest.mark.parametrize("missing", ["exp", "aud", "sub", "iat", "iss"])
def test_a_token_without_a_required_claim_is_refused(verifier, signer, missing):
    token = signer.token()
    header, payload, _ = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    del claims[missing]
    with pytest.raises(InvalidToken):
        verifier.verify(jwt.encode(claims, signer.private, algorithm="EdDSA", headers={"kid": signer.kid}))


def test_a_rotated_key_is_fetched_at_once_and_a_withdrawn_one_voids_what_it_signed(verifier, jwks, signer,
                                                                                   monotonic):
    """A token is from Latchkey itself, so a kid never seen means a rotation: the JWK set is fetched
    again at once, however recent the last fetch (waiting would refuse every fresh answer)."""
    old = verifier.verify(signer.token())
    successor = Signer()
    jwks["keys"] = [signer.jwk(), successor.jwk()]
    monotonic.now += 1  # well within refetch_interval
    new = verifier.verify(successor.token())
    assert jwks["fetches"] == 2
    assert verifier.still_valid(old) and verifier.still_valid(new)  # the unchanged key is still the same
    jwks["keys"] = [successor.jwk()]  # the old key withdrawn
    monotonic.now += 301  # the JWK set is older than max_age: the next verification refetches it
    verifier.verify(successor.token())
    assert jwks["fetches"] == 3
    assert not verifier.still_valid(old) and verifier.still_valid(new)


def test_a_kid_that_stays_unknown_refetches_no_more_than_once_per_interval(verifier, jwks, signer, monotonic):
    """A kid a fetch did not list is remembered: a server signing under a key it does not publish
    cannot make every check a fetch. A kid never seen still fetches at once."""
    verifier.verify(signer.token())
    stranger = Signer()
    with pytest.raises(InvalidToken, match="unknown signing key"):
        verifier.verify(stranger.token())
    assert jwks["fetches"] == 2  # never seen: fetched at once
    for _ in range(3):
        monotonic.now += 5
        with pytest.raises(InvalidToken, match="unknown signing key"):
            verifier.verify(stranger.token())
    assert jwks["fetches"] == 2  # remembered as unknown: not within refetch_interval (30 s)
    jwks["keys"].append(stranger.jwk())  # published at last
    monotonic.now += 16
    assert verifier.verify(stranger.token()).kid == stranger.kid
    assert jwks["fetches"] == 3


def test_one_thread_fetches_a_rotated_key_the_others_wait_for_it(jwks, signer):
    """Single flight: every thread that meets the new kid at once waits for the one fetch."""
    def slow_fetch(url):
        jwks["fetches"] += 1
        time.sleep(0.1)
        return {"keys": list(jwks["keys"])}

    verifier = TokenVerifier("http://x/jwks", slow_fetch)
    verifier.verify(signer.token())
    successor = Signer()
    jwks["keys"].append(successor.jwk())
    tokens = [successor.token() for _ in range(8)]
    with ThreadPoolExecutor(len(tokens)) as pool:
        kids = list(pool.map(lambda token: verifier.verify(token).kid, tokens))
    assert kids == [successor.kid] * len(tokens) and jwks["fetches"] == 2


def test_while_the_jwk_set_is_unreachable_an_unknown_kid_is_unavailable_not_invalid(jwks, signer, monotonic):
    """The answer it came with is then used but not cached (the client); the fetch is retried once
    per refetch_interval, not on every answer."""
    down = {"now": False}

    def fetch(url):
        jwks["fetches"] += 1
        if down["now"]:
            raise LatchkeyUnavailable("connection refused")
        return {"keys": list(jwks["keys"])}

    verifier = TokenVerifier("http://x/jwks", fetch, monotonic=monotonic)
    verifier.verify(signer.token())
    successor = Signer()
    jwks["keys"].append(successor.jwk())
    down["now"] = True
    for _ in range(3):
        with pytest.raises(LatchkeyUnavailable):
            verifier.verify(successor.token())
        monotonic.now += 1
    assert jwks["fetches"] == 2
    down["now"] = False
    monotonic.now += 30
    assert verifier.verify(successor.token()).kid == successor.kid and jwks["fetches"] == 3


def test_a_key_replaced_under_the_same_kid_voids_what_the_old_one_signed(verifier, jwks, signer, monotonic):
    old = verifier.verify(signer.token())
    impostor = Signer(kid=signer.kid)
    jwks["keys"] = [impostor.jwk()]
    monotonic.now += 301
    verifier.verify(impostor.token())
    assert not verifier.still_valid(old)


def test_still_valid_checks_expiry_on_every_use(jwks, signer):
    clock = Clock()
    clock.now = time.time()
    verifier = TokenVerifier("http://x/jwks", lambda url: {"keys": jwks["keys"]}, clock=clock)
    claims = verifier.verify(signer.token(lifetime=10))
    assert verifier.still_valid(claims)
    clock.now += 11
    assert not verifier.still_valid(claims)


@pytest.mark.parametrize("forge", [
    # HS256 with the public key's bytes as the secret: the classic algorithm confusion
    lambda signer: jwt.encode({"iss": "latchkey", "aud": SERVICE_AUDIENCE, "sub": "1", "iat": int(time.time()),
                               "exp": int(time.time()) + 60}, signer.jwk()["x"], algorithm="HS256",
                              headers={"kid": signer.kid}),
    # alg "none"
    lambda signer: jwt.encode({"iss": "latchkey", "aud": SERVICE_AUDIENCE, "sub": "1", "iat": int(time.time()),
                               "exp": int(time.time()) + 60}, None, algorithm="none", headers={"kid": signer.kid}),
    # no kid at all
    lambda signer: jwt.encode({"iss": "latchkey", "aud": SERVICE_AUDIENCE, "sub": "1", "iat": int(time.time()),
                               "exp": int(time.time()) + 60}, signer.private, algorithm="EdDSA"),
    lambda signer: "not.a.token",
])
def test_forged_tokens_are_refused(verifier, signer, forge):
    with pytest.raises(InvalidToken):
        verifier.verify(forge(signer))
