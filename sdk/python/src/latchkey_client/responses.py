"""What a protected service answers instead of serving: JSON:API error documents with Latchkey's
own codes and titles, for every integration (flask.py, wsgi.py).

| code | status |
| --- | --- |
| NOT_FOUND, REVOKED, SUSPENDED, EXPIRED | 401 (with `WWW-Authenticate: Bearer`) |
| FORBIDDEN, INSUFFICIENT_SCOPES | 403 |
| RATE_LIMITED, QUOTA_EXCEEDED, BUDGET_EXCEEDED | 429 (with `Retry-After` when the answer tells) |
| UNAUTHENTICATED (no key sent), INVALID_AUTHORIZATION (not `Bearer <key>`) | 401 |
| LATCHKEY_UNAVAILABLE (Latchkey unreachable, fail="closed") | 503 with `Retry-After` |
| LATCHKEY_THROTTLED (Latchkey answers 429 to the service itself; any fail policy) | 503 (`Retry-After` if known) |
| LATCHKEY_ERROR (the service's key refused, an untrustworthy answer) | 500 |
"""
import ipaddress
import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from latchkey_client.errors import LatchkeyError, LatchkeyThrottled, LatchkeyUnavailable
from latchkey_client.verification import Verification

log = logging.getLogger("latchkey_client")

JSONAPI = "application/vnd.api+json"
UNAVAILABLE_RETRY_SECONDS = 5  # as Latchkey's own 503s

# code -> (status, title, detail)
REFUSALS = {
    "NOT_FOUND": (401, "Unknown API key", "The API key is unknown or malformed."),
    "REVOKED": (401, "Revoked API key", "The API key has been revoked."),
    "SUSPENDED": (401, "Suspended API key", "The API key is suspended."),
    "EXPIRED": (401, "Expired API key", "The API key has expired."),
    "FORBIDDEN": (403, "Address not allowed", "The API key may not be used from this address."),
    "INSUFFICIENT_SCOPES": (403, "Insufficient scope", "The API key lacks a scope this endpoint needs."),
    "RATE_LIMITED": (429, "Too many requests", "The API key's rate limit is reached."),
    "QUOTA_EXCEEDED": (429, "Quota exceeded", "The API key's quota is used up."),
    "BUDGET_EXCEEDED": (429, "Budget exceeded", "The API key's budget does not cover this request."),
}
STATUS_OF = {code: status for code, (status, _, _) in REFUSALS.items()}


@dataclass(eq=False)  # not frozen: raising sets attributes on an exception
class Refusal(Exception):
    """An answer that refuses the request: status, headers and the JSON:API error document."""

    status: int
    code: str
    title: str
    detail: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def document(self) -> dict:
        return {"errors": [{"status": str(self.status), "title": self.title, "detail": self.detail,
                            "code": self.code}]}

    def body(self) -> bytes:
        return json.dumps(self.document()).encode()

    def header_list(self) -> list[tuple[str, str]]:
        return [("Content-Type", JSONAPI), *self.headers.items()]


def refusal(verification: Verification) -> Refusal:
    """The answer to a request whose key Latchkey refused."""
    status, title, detail = REFUSALS.get(verification.code, (403, "Forbidden", "The API key is refused."))
    if verification.missing_scopes:
        detail = f"The API key lacks the scope(s): {', '.join(verification.missing_scopes)}."
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if status == 429 and verification.retry_after is not None:
        headers["Retry-After"] = str(verification.retry_after)
    return Refusal(status, verification.code, title, detail, headers)


def unavailable(outage: LatchkeyUnavailable) -> Refusal:
    """The answer when Latchkey cannot be asked and the fail policy refuses."""
    seconds = outage.retry_after if outage.retry_after is not None else UNAVAILABLE_RETRY_SECONDS
    return Refusal(503, "LATCHKEY_UNAVAILABLE", "Service unavailable", "API keys cannot be verified right now.",
                   {"Retry-After": str(max(1, math.ceil(seconds)))})


def throttled(refused: LatchkeyThrottled) -> Refusal:
    """The answer when Latchkey refuses the service itself with a 429 (its failed-authentication
    limit, its key's quota): this service cannot verify keys now, so nobody is served."""
    headers = {} if refused.retry_after is None else {"Retry-After": str(max(1, math.ceil(refused.retry_after)))}
    return Refusal(503, "LATCHKEY_THROTTLED", "Service unavailable",
                   "This service cannot verify API keys right now: Latchkey refuses its requests.", headers)


def failure() -> Refusal:
    """The answer when Latchkey's answer cannot be used (a misconfigured service key, a bad token)."""
    return Refusal(500, "LATCHKEY_ERROR", "Internal server error", "API keys cannot be verified: see the logs.")


def check(client, x_api_key: str | None, authorization: str | None, scopes: Iterable[str], ip: str | None,
          cost: Callable[[], int | None]) -> Verification | Refusal:
    """Verify the key a request sent (its X-API-Key and Authorization headers) with `client` for
    `scopes` from `ip` at `cost()`: the verification when it is valid, else the Refusal to answer
    with (every integration's one mapping of Latchkey's answers and failures)."""
    try:
        key = credential(x_api_key, authorization)
        verification = client.verify(key, scopes, ip=ip, cost=cost())
    except Refusal as refused:
        return refused
    except LatchkeyUnavailable as outage:
        return unavailable(outage)
    except LatchkeyThrottled as refused:
        log.error("API key verification refused to this service: %s", refused)
        return throttled(refused)
    except LatchkeyError as error:
        log.error("API key verification failed: %s", error)
        return failure()
    return verification if verification.valid else refusal(verification)


def credential(x_api_key: str | None, authorization: str | None) -> str:
    """Return the API key of a request from its X-API-Key or Authorization header (X-API-Key first,
    as Latchkey reads them); raise a 401 Refusal when there is none or Authorization is not Bearer."""
    if x_api_key and x_api_key.strip():
        return x_api_key.strip()
    scheme, _, value = (authorization or "").partition(" ")
    if not scheme:
        raise Refusal(401, "UNAUTHENTICATED", "Unauthorized", "Authentication required: send an API key.",
                      {"WWW-Authenticate": "Bearer"})
    if scheme.lower() != "bearer" or not value.strip():
        raise Refusal(401, "INVALID_AUTHORIZATION", "Unauthorized", "Use 'Authorization: Bearer <key>'.",
                      {"WWW-Authenticate": "Bearer"})
    return value.strip()


@lru_cache(maxsize=4096)
def client_address(text: str | None) -> str | None:
    """The end client's address as Latchkey takes it, or None when `text` is not an IP address
    (a unix socket, a test client's placeholder)."""
    try:
        return str(ipaddress.ip_address(text or ""))
    except ValueError:
        return None
