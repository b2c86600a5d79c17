"""Signed answers: Latchkey's tokens, checked against its JWK set.

A valid answer asked with `"token": true` carries `meta.token`, a compact JWS (EdDSA over Ed25519,
header `kid`) whose claims are `iss`, `aud` ("key:<service key id>"), `sub` (the verified key's
id), `owner`, `scopes`, `code` ("VALID"), `iat`, `exp` and `jti`. The public keys are at
`<url>/.well-known/jwks.json`.

`TokenVerifier.verify` checks a token in full (signature, algorithm, expiry, audience, issuer) and
returns its `TokenClaims`, which remember the key that verified them. `still_valid` is the check
of each later use of a cached answer: not expired, same audience and issuer, and its signing key
still the one in the JWK set. The signature itself is not recomputed there: Ed25519 verification
is deterministic, so the same bytes against the same key give the same answer (about 100 us on a
small machine, against under 1 us for the rest); a JWK set refetched without that key, or with
another key under its `kid`, voids every answer it signed. `verify` again (or the client's
`recheck_signature=True`) to recompute it anyway.

The JWK set is fetched on first use, again when it is older than `max_age`, and at once when a
token names a `kid` never seen before. Tokens reach the SDK only in Latchkey's own answers (the
client's) or from the service's peers (`check_token`), never from its callers, so an unknown kid
is a rotation: waiting would refuse every fresh answer until the wait is over. One thread fetches
(under the lock), the others then find the key. A kid still unknown after a fetch is remembered
(the last MAX_UNKNOWN_KIDS of them) and fetched for again at most once per `refetch_interval`, so
a server that signs under a key it does not publish cannot make every answer a fetch. While the
last fetch failed, a token under an unknown kid raises LatchkeyUnavailable (the client then uses
its answer without caching it), not InvalidToken.
"""
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from latchkey_client.errors import InvalidToken, LatchkeyError, LatchkeyUnavailable

log = logging.getLogger("latchkey_client")

REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", "iat")
MAX_UNKNOWN_KIDS = 256  # kids remembered as unknown after a fetch; more: the oldest are forgotten


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """A verified token's claims, and the JWK (`signed_by`) its signature was checked against."""

    sub: str
    owner: str | None
    scopes: tuple[str, ...]
    code: str
    iat: float
    exp: float
    jti: str | None
    aud: str
    iss: str
    kid: str
    signed_by: Any  # the jwt.PyJWK that verified the signature


class TokenVerifier:
    """Checks Latchkey's tokens against its JWK set; thread-safe.

    `fetch(url)` returns the JWK set's JSON as a dict (the client passes its pooled session's GET).
    `audience` is the service's own ("key:<its key id>"); when None it is learned from the first
    token that verifies, and every later token must carry the same."""

    def __init__(self, jwks_url: str, fetch: Callable[[str], Mapping[str, Any]], *, issuer: str = "latchkey",
                 audience: str | None = None, algorithms: Sequence[str] = ("EdDSA",), leeway: float = 5.0,
                 refetch_interval: float = 30.0, max_age: float = 300.0,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic):
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.audience = audience
        self.algorithms = list(algorithms)
        self.leeway = leeway
        self.refetch_interval = refetch_interval
        self.max_age = max_age
        self.fetches = 0
        self._fetch = fetch
        self._clock = clock
        self._monotonic = monotonic
        self._keys: dict[str, Any] = {}  # kid -> jwt.PyJWK
        self._raw: dict[str, Any] = {}  # kid -> its JWK as fetched
        self._fetched_at: float | None = None
        self._unknown: dict[str, None] = {}  # kids a fetch did not list, oldest first
        self._failure: LatchkeyError | None = None  # why the last fetch failed, if it did
        self._lock = threading.Lock()

    def verify(self, token: str) -> TokenClaims:
        """Return the claims of `token` after checking it in full; raise InvalidToken otherwise
        (LatchkeyUnavailable when the JWK set cannot be fetched)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise InvalidToken(f"not a compact JWS: {error}") from None
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("the token names no signing key (kid)")
        key = self._key(kid)
        audience = self.audience
        try:
            claims = jwt.decode(
                token, key, algorithms=self.algorithms, issuer=self.issuer, leeway=self.leeway,
                audience=audience, options={"require": list(REQUIRED_CLAIMS), "verify_aud": audience is not None})
        except jwt.PyJWTError as error:
            raise InvalidToken(f"{type(error).__name__}: {error}") from None
        aud = claims["aud"]
        if not isinstance(aud, str):
            raise InvalidToken("the audience must be one string, key:<service key id>")
        if audience is None:
            with self._lock:
                if self.audience is None:
                    self.audience = aud
                    log.info("Latchkey token audience learned: %s", aud)
            if aud != self.audience:
                raise InvalidToken("the token is for another audience")
        scopes = claims.get("scopes") or ()
        if not isinstance(scopes, list | tuple) or not all(isinstance(s, str) for s in scopes):
            raise InvalidToken("scopes must be a list of strings")
        return TokenClaims(sub=str(claims["sub"]), owner=None if claims.get("owner") is None else str(claims["owner"]),
                           scopes=tuple(scopes), code=str(claims.get("code", "")), iat=float(claims["iat"]),
                           exp=float(claims["exp"]), jti=claims.get("jti"), aud=aud, iss=claims["iss"], kid=kid,
                           signed_by=key)

    def still_valid(self, claims: TokenClaims) -> bool:
        """Whether an answer verified earlier may be used now: not expired, for this audience and
        issuer, and its signing key still the one the JWK set holds under its kid."""
        return (claims.exp > self._clock() and claims.aud == self.audience and claims.iss == self.issuer
                and self._keys.get(claims.kid) is claims.signed_by)

    def _key(self, kid: str):
        """The PyJWK under `kid`: from the JWK set, fetched once, again when it is older than
        max_age, at once when `kid` was never looked for, and at most once per refetch_interval
        when a fetch already did not list it (the module's docstring)."""
        with self._lock:
            now = self._monotonic()
            if self._fetched_at is None or now - self._fetched_at > self.max_age:
                self._refresh(now, kid)
            elif kid not in self._keys and (kid not in self._unknown
                                            or now - self._fetched_at >= self.refetch_interval):
                self._refresh(now, kid)
            key = self._keys.get(kid)
            failure = self._failure
        if key is None:
            if isinstance(failure, LatchkeyUnavailable):
                raise LatchkeyUnavailable(f"signing key {kid!r} unknown, and the JWK set unreachable: {failure}")
            raise InvalidToken(f"unknown signing key {kid!r}")
        return key

    def _refresh(self, now: float, kid: str):
        """Fetch the JWK set for a token under `kid` (under the lock). Keys whose JWK did not change
        stay the same objects, so the answers they verified stay valid."""
        self._fetched_at = now  # a failed fetch counts too: no retry storm against a down server
        self.fetches += 1
        try:
            self._replace_keys(self._fetch(self.jwks_url))
        except LatchkeyError as error:
            self._failure = error
            raise
        finally:
            if kid not in self._keys:
                self._unknown[kid] = None
                if len(self._unknown) > MAX_UNKNOWN_KIDS:
                    del self._unknown[next(iter(self._unknown))]
        self._failure = None

    def _replace_keys(self, document: Mapping[str, Any]):
        listed = document.get("keys") if isinstance(document, Mapping) else None
        if not isinstance(listed, list):
            raise LatchkeyError(f"not a JWK set: {self.jwks_url}")
        keys, raw = {}, {}
        for jwk_data in listed:
            kid = jwk_data.get("kid") if isinstance(jwk_data, Mapping) else None
            if not isinstance(kid, str) or not kid:
                continue
            if self._raw.get(kid) == jwk_data:
                keys[kid] = self._keys[kid]
            else:
                try:
                    keys[kid] = jwt.PyJWK(dict(jwk_data))
                except jwt.PyJWTError as error:  # a key of a kind this SDK cannot use: skipped
                    log.warning("Latchkey JWK %s skipped: %s", kid, error)
                    continue
            raw[kid] = jwk_data
        dropped = set(self._keys) - set(keys)
        if dropped:
            log.info("Latchkey signing keys withdrawn: %s", ", ".join(sorted(dropped)))
        self._keys, self._raw = keys, raw
        for listed_kid in keys:
            self._unknown.pop(listed_kid, None)
