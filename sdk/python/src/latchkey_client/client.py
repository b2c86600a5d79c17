"""`Latchkey`: ask Latchkey whether a key may do something, through a pooled session, with retries,
an answer cache and a policy for when Latchkey cannot be reached."""
import dataclasses
import email.utils
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from latchkey_client.cache import AnswerCache, CacheKey, Entry, cache_key, key_hint
from latchkey_client.errors import (
    InvalidToken,
    LatchkeyError,
    LatchkeyRequestError,
    LatchkeyThrottled,
    LatchkeyUnavailable,
)
from latchkey_client.tokens import TokenClaims, TokenVerifier
from latchkey_client.verification import (
    FROM_CACHE,
    FROM_FAIL_OPEN,
    FROM_STALE_CACHE,
    FROM_TOKEN,
    UNVERIFIED,
    VALID,
    Verification,
)

log = logging.getLogger("latchkey_client")

FAIL_POLICIES = ("closed", "open", "cached")
VERIFY_PATH = "/v1/api-keys/verify"
JWKS_PATH = "/.well-known/jwks.json"
JSONAPI = "application/vnd.api+json"
VERSION = "0.1.0"

# Latchkey.from_env: environment variable -> (argument, conversion).
ENVIRONMENT: dict[str, tuple[str, Callable[[str], Any]]] = {
    "LATCHKEY_URL": ("url", str),
    "LATCHKEY_SERVICE_KEY": ("service_key", str),
    "LATCHKEY_TIMEOUT": ("timeout", float),
    "LATCHKEY_RETRIES": ("retries", int),
    "LATCHKEY_CACHE_TTL": ("cache_ttl", float),
    "LATCHKEY_NEGATIVE_TTL": ("negative_ttl", float),
    "LATCHKEY_STALE_TTL": ("stale_ttl", float),
    "LATCHKEY_FAIL": ("fail", str),
    "LATCHKEY_TOKENS": ("tokens", lambda text: str(text).strip().lower() not in ("0", "false", "no", "off")),
    "LATCHKEY_AUDIENCE": ("audience", str),
    "LATCHKEY_ISSUER": ("issuer", str),
}


class Latchkey:
    """A client of one Latchkey service, shared by every thread of a process.

    - `timeout`: seconds for connecting and for reading, per attempt.
    - `retries`: attempts after the first. 429 and 503 are retried after their `Retry-After` when
      it is at most `max_retry_after` seconds (longer: no retry, the error at once); connection
      failures and other 5xx after a jittered exponential backoff (`backoff` seconds, doubling). A
      request that may have reached Latchkey is sent again only without a `cost`. Still failing:
      a transport failure or a 5xx is LatchkeyUnavailable, a 429 LatchkeyThrottled (Latchkey
      refuses the service itself: its failed-authentication limit, or its key's quota).
    - `cache_ttl`: seconds a valid answer is served from the cache, never past its token's `exp`,
      the key's `expires-at` or the checked secret's `rotation-grace-until`; `negative_ttl`:
      seconds a refusal is. Answers asked with a `cost` are neither served from nor stored in the
      cache: Latchkey must count the cost.
    - `fail`: when Latchkey cannot be asked (LatchkeyUnavailable, never LatchkeyThrottled):
      "closed" raises it (the integrations answer 503); "open" returns a valid Verification with
      code UNVERIFIED and `unverified=True`; "cached" serves a cached answer until it expires (its
      token's `exp`, or `stale_ttl` seconds after it was fetched without a token), else raises.
    - `tokens`: ask Latchkey to sign valid answers (`"token": true`) and check them with its JWK
      set (`audience`, learned from the first token when None; `issuer`; `algorithms`; `leeway`
      seconds of clock skew). A cached signed answer is re-checked on every use (tokens.py);
      `recheck_signature=True` also recomputes its signature each time.
    """

    def __init__(self, url: str, service_key: str, *, timeout: float = 2.0, retries: int = 2,
                 backoff: float = 0.05, max_retry_after: float = 2.0, cache_ttl: float = 5.0,
                 negative_ttl: float = 1.0, stale_ttl: float = 60.0, max_entries: int = 10_000,
                 fail: str = "closed", tokens: bool = True, audience: str | None = None, issuer: str = "latchkey",
                 algorithms: Iterable[str] = ("EdDSA",), leeway: float = 5.0, recheck_signature: bool = False,
                 pool_size: int = 10, session: requests.Session | None = None):
        if fail not in FAIL_POLICIES:
            raise ValueError(f"fail must be one of {', '.join(FAIL_POLICIES)}, not {fail!r}")
        if not url or not service_key:
            raise ValueError("Latchkey needs its URL and a service key with keys:verify")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_retry_after = max_retry_after
        self.cache_ttl = cache_ttl
        self.negative_ttl = negative_ttl
        self.stale_ttl = stale_ttl
        self.fail = fail
        self.use_tokens = tokens
        self.recheck_signature = recheck_signature
        self.cache = AnswerCache(max_entries)
        self.tokens = TokenVerifier(self.url + JWKS_PATH, self._get_json, issuer=issuer, audience=audience,
                                    algorithms=tuple(algorithms), leeway=leeway)
        self._verify_url = self.url + VERIFY_PATH
        self._headers = {"X-API-Key": service_key, "Accept": JSONAPI, "User-Agent": f"latchkey-client/{VERSION}"}
        self._owns_session = session is None
        self._session = session or requests.Session()
        if self._owns_session:  # a session passed in keeps its own adapters
            adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size, max_retries=0)
            self._session.mount("http://", adapter)
            self._session.mount("https://", adapter)
        self._monotonic = time.monotonic
        self._clock = time.time
        self._sleep = time.sleep
        self._outage_since: float | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, environ: Mapping[str, Any] | None = None, **overrides) -> "Latchkey":
        """Return a client configured from LATCHKEY_* variables (ENVIRONMENT) of `environ` (default:
        os.environ); keyword arguments beat them. LATCHKEY_URL and LATCHKEY_SERVICE_KEY are needed."""
        environ = os.environ if environ is None else environ
        settings = {name: convert(environ[variable]) for variable, (name, convert) in ENVIRONMENT.items()
                    if environ.get(variable) not in (None, "")}
        settings.update(overrides)
        missing = [variable for variable, (name, _) in list(ENVIRONMENT.items())[:2] if not settings.get(name)]
        if missing:
            raise LatchkeyError(f"set {' and '.join(missing)}")
        return cls(settings.pop("url"), settings.pop("service_key"), **settings)

    def __repr__(self) -> str:
        return f"Latchkey({self.url!r}, fail={self.fail!r})"

    def close(self):
        if self._owns_session:
            self._session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # --- verification -----------------------------------------------------------------------------

    def verify(self, key: str, scopes: Iterable[str] = (), ip: str | None = None,
               cost: int | None = None) -> Verification:
        """Return Latchkey's answer: may `key` use `scopes`, from the end client's address `ip`, at
        `cost` units of its budget? Raise LatchkeyUnavailable when Latchkey cannot be asked (unless
        the fail policy answers), LatchkeyRequestError or LatchkeyThrottled when it refuses the
        service itself, and InvalidToken when its signed answer does not check out."""
        if not isinstance(key, str) or not key:
            return Verification(valid=False, code="NOT_FOUND")
        asked = cache_key(key, (scopes,) if isinstance(scopes, str) else scopes, ip)
        if cost is None:
            entry = self.cache.get(asked)
            if entry is not None and entry.fresh_until > self._monotonic() and self._usable(asked, entry):
                return entry.hit
        try:
            answer, claims, cacheable = self._ask(key, asked[1], ip, cost)
        except LatchkeyUnavailable as outage:
            return self._when_unavailable(outage, asked, cost)
        if self._outage_since is not None:
            self._recovered()
        if cost is None and cacheable:
            entry = self._entry(answer, claims)
            if entry is not None:
                self.cache.put(asked, entry)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("Latchkey answered %s for key %s (scopes %s)", answer.code, key_hint(asked[0]),
                      ",".join(asked[1]) or "-")
        return answer

    def check_token(self, token: str) -> Verification:
        """Return the Verification a signed answer (`Verification.token`, passed on by another
        service) stands for, checked offline against Latchkey's JWK set; raise InvalidToken."""
        claims = self.tokens.verify(token)
        if claims.code != VALID:
            raise InvalidToken(f"the token's code is {claims.code!r}, not VALID")
        return Verification(valid=True, code=VALID, key_id=claims.sub, owner_id=claims.owner, scopes=claims.scopes,
                            source=FROM_TOKEN, token=token)

    def _usable(self, asked: CacheKey, entry: Entry) -> bool:
        """Whether a cached answer may be used now (its token re-checked); drop it when not."""
        claims = entry.claims
        if claims is None or (self.tokens.still_valid(claims) and (not self.recheck_signature
                                                                   or self._signature_holds(entry))):
            return True
        self.cache.drop(asked, entry)
        return False

    def _signature_holds(self, entry: Entry) -> bool:
        try:
            return entry.claims is not None and self.tokens.verify(entry.answer.token or "").jti == entry.claims.jti
        except LatchkeyError:
            return False

    def _entry(self, answer: Verification, claims: TokenClaims | None) -> Entry | None:
        """The cache entry of a fresh answer, or None when it must not be cached."""
        now = self._monotonic()
        if not answer.valid:
            return Entry(answer, dataclasses.replace(answer, source=FROM_CACHE), now + self.negative_ttl,
                         now + self.negative_ttl) if self.negative_ttl > 0 else None
        fresh, usable = self.cache_ttl, self.stale_ttl
        if claims is not None:
            left = claims.exp - self._clock()
            fresh, usable = min(fresh, left), left
        for ends in (answer.expires_at, answer.rotation_grace_until):  # the secret stops working then
            if ends is not None:
                left = (ends - datetime.now(UTC)).total_seconds()
                fresh, usable = min(fresh, left), min(usable, left)
        if fresh <= 0:
            return None
        usable = max(usable, fresh) if self.fail == "cached" else fresh
        return Entry(answer, dataclasses.replace(answer, source=FROM_CACHE), now + fresh, now + usable, claims)

    def _when_unavailable(self, outage: LatchkeyUnavailable, asked: CacheKey, cost: int | None) -> Verification:
        """Apply the fail policy to a question Latchkey could not answer."""
        with self._lock:
            first = self._outage_since is None
            if first:
                self._outage_since = self._monotonic()
        if first:
            log.warning("Latchkey is unreachable (%s); fail policy %r applies until it answers", outage, self.fail)
        if self.fail == "open":
            return Verification(valid=True, code=UNVERIFIED, source=FROM_FAIL_OPEN)
        if self.fail == "cached" and cost is None:
            entry = self.cache.get(asked)
            if entry is not None and self._usable(asked, entry):
                return dataclasses.replace(entry.answer, source=FROM_STALE_CACHE)
        raise outage

    def _recovered(self):
        with self._lock:
            since, self._outage_since = self._outage_since, None
        if since is not None:
            log.warning("Latchkey answers again (unreachable for %.1f s)", self._monotonic() - since)

    # --- HTTP -------------------------------------------------------------------------------------

    def _ask(self, key: str, scopes: tuple[str, ...], ip: str | None, cost: int | None):
        """Ask Latchkey; return (Verification, token claims or None, whether it may be cached)."""
        body: dict[str, Any] = {"key": key}
        if scopes:
            body["scopes"] = list(scopes)
        if ip is not None:
            body["ip"] = ip
        if cost is not None:
            body["cost"] = cost
        elif self.use_tokens:
            body["token"] = True  # only answers that may be cached need a signature
        response = self._post(body, resend=cost is None)
        try:
            meta = response.json()["meta"]
            answer = Verification.from_meta(meta)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise LatchkeyError("Latchkey's answer is not a verification document") from None
        if not (answer.valid and answer.token and self.use_tokens):
            return answer, None, True
        try:
            claims = self.tokens.verify(answer.token)
        except LatchkeyUnavailable as error:  # the answer stands; only its offline re-check is missing
            log.warning("Latchkey's signing keys are unreachable (%s): the answer is not cached", error)
            return answer, None, False
        if claims.sub != answer.key_id or claims.code != VALID or claims.owner not in (None, answer.owner_id):
            raise InvalidToken("the token's claims contradict the answer it came with")
        return answer, claims, True

    def _post(self, body: dict, resend: bool) -> requests.Response:
        """POST `body` to the verify endpoint; return the 200 answer. Retry as the class says."""
        attempt = 0
        while True:
            retry_after = None
            failure: LatchkeyError
            try:
                response = self._session.post(self._verify_url, json=body, headers=self._headers,
                                              timeout=self.timeout)
            except requests.RequestException as error:
                failure = LatchkeyUnavailable(f"{type(error).__name__}: {error}")
                retryable = resend or _never_sent(error)
            else:
                status = response.status_code
                if status == 200:
                    return response
                if status != 429 and status < 500:
                    raise LatchkeyRequestError(status, *_error_of(response))
                retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
                if status == 429:  # Latchkey is up and refuses this service (errors.LatchkeyThrottled)
                    failure = LatchkeyThrottled(status, *_error_of(response), retry_after=retry_after)
                else:
                    failure = LatchkeyUnavailable(f"Latchkey answered {status}", status=status,
                                                  retry_after=retry_after)
                retryable = status in (429, 503) or resend  # refused before counting, or safe to resend
                response.close()
            if not retryable or attempt >= self.retries:
                raise failure
            if retry_after is not None and retry_after > self.max_retry_after:
                raise failure  # waiting less than asked is pointless, waiting longer holds the request
            delay = retry_after if retry_after is not None else random.uniform(0, self.backoff * 2 ** attempt)
            attempt += 1
            log.debug("retrying the verification in %.2f s (%s)", delay, failure)
            self._sleep(delay)

    def _get_json(self, url: str) -> Mapping[str, Any]:
        """GET a JSON document (the JWK set) through the pooled session; LatchkeyUnavailable if it fails."""
        try:
            response = self._session.get(url, headers={"Accept": "application/json"}, timeout=self.timeout)
        except requests.RequestException as error:
            raise LatchkeyUnavailable(f"{type(error).__name__}: {error}") from None
        if response.status_code != 200:
            raise LatchkeyUnavailable(f"{url} answered {response.status_code}", status=response.status_code)
        try:
            return response.json()
        except ValueError:
            raise LatchkeyError(f"{url} did not answer JSON") from None


def _never_sent(error: requests.RequestException) -> bool:
    """Whether a failed request certainly never reached the server (no connection was made)."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


def _retry_after_seconds(value: str | None) -> float | None:
    """Seconds of a Retry-After header (delay-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, math.ceil((moment - datetime.now(UTC)).total_seconds()))


def _error_of(response: requests.Response) -> tuple[str | None, str]:
    """(code, detail) of a JSON:API error answer, as far as it says."""
    try:
        error = response.json()["errors"][0]
        return error.get("code"), error.get("detail") or error.get("title") or ""
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None, response.reason or ""
