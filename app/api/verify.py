"""POST /v1/api-keys/verify: other services ask whether a key may do something.

The caller is a service holding a key with `keys:verify` (only admins grant it) or an admin's JWT.
The key to check travels in the body, never in a URL. A well-formed request always answers 200
with `valid` and a `code`; no answer ever carries a secret or a digest.

One pipeline, two doors. `answer` is everything the endpoint does once routed: the failed-
authentication limit, the caller's authentication and scope, the caller key's own quota, reading
the body, verifying the key in it, counting that key's usage, and the answer document. The Flask
view below calls it, and so does its door of the WSGI fast path (`DOOR`, app/fast_path.py), which
spares the services' hot path Flask's request machinery when none of the app's request hooks has
work to do.

Callers that fail to authenticate are counted per client IP (RATE_LIMIT_AUTH_FAILURES): once an
address is over that limit, each failure there is answered 429 instead of 401 or 403. A valid
caller is always served, whatever others failed from its address (a shared proxy or NAT): callers
are never limited here, the limits that apply are those of the keys they check (and the caller
key's own quota, if it has one).

With `"token": true`, a valid answer also carries `meta.token`: a signed JWT that the caller can hand
on and check offline against /.well-known/jwks.json (app/services/signing.py: its claims, its
lifetime, and why a revoked key's tokens stay valid until they expire). Requests without it do no
signing work at all.
"""
import functools
import ipaddress

from flask import current_app, make_response, request
from limits import parse_many
from redis.exceptions import RedisError

from app.api import bp
from app.api.helpers.auth import authenticate, authentication_required, check_scope, credential_from
from app.api.helpers.errors import ApiError, handle_error, retry_after
from app.api.helpers.jsonapi import JSONAPI, encode
from app.api.helpers.ratelimit import charge_quota, client_ip, limits_itself
from app.api.helpers.requests import MAX_JSON_DEPTH, negotiate, read_attributes
from app.extensions import limiter
from app.fast_path import Door
from app.models.types import utcnow
from app.services import allowances, reservations, signing
from app.services import scopes as scope_rules
from app.services.verifier import Outcome, count, verify

PATH = "/v1/api-keys/verify"
FAILURE_SCOPE = "verify-auth-failure"
MAX_COST = 10**9
HEADERS = {"Content-Type": JSONAPI, "Cache-Control": "no-store"}


def answer(api_key_header: str | None, authorization: str, address: str, body: bytes):
    """Run the pipeline for a request with these headers, client address and body (its media types
    checked: requests.negotiate); return (document, headers) of its 200 answer, or raise the ApiError
    it answers instead."""
    now = utcnow()
    try:
        kind, credential = credential_from(api_key_header, authorization)
        caller = authenticate(kind, credential, address, now)
        if caller is None:
            raise authentication_required()
        check_scope(caller, "keys:verify")
        if caller.key is None and not caller.is_admin:
            raise ApiError(403, "Insufficient scope", "Verification needs a key with keys:verify or an admin's "
                           "session.", code="INSUFFICIENT_SCOPES")
    except ApiError as refusal:
        FailureLimit(address).count(refusal)
        raise
    headers = charge_quota(caller.key) if caller.key is not None and caller.key.quota_limit is not None else {}
    secret, scopes, ip, cost, token, reserve = read_request(read_attributes(body))
    if token or reserve:
        identity = caller_identity(caller)
        audience, reserve_for = (identity if token else None), (identity if reserve else None)
        return verify_and_count(secret, scopes, ip, cost, now, audience, reserve_for), {**HEADERS, **headers}
    return verify_and_count(secret, scopes, ip, cost, now), {**HEADERS, **headers}


def caller_identity(caller) -> str:
    """Who asked: the audience of its tokens and the owner of its reservations."""
    return f"key:{caller.key.id}" if caller.key is not None else f"user:{caller.user_id}"


@bp.post("/api-keys/verify")
def verify_key():
    """Return 200 with `valid`, `code` and, when valid, the key's id, owner, scopes and allowances (and a
    signed token, when asked for)."""
    document, headers = answer(request.headers.get("X-API-Key"), request.headers.get("Authorization", ""),
                               client_ip(), request.get_data(cache=True))
    return make_response(document, 200, headers)


ENDPOINT = f"{bp.name}.{verify_key.__name__}"
MAX_FAST_BODY = 16 * 1024  # larger bodies are unusual: the Flask view reads them


def fast_answer(environ, body: bytes):
    """The fast path's door (app/fast_path.py): the pipeline's answer to this request as a WSGI
    application, errors answered as the Flask view's error handler answers them; None (Flask's to
    answer) for a body with more brackets than MAX_JSON_DEPTH, which check_json_body judges."""
    if body.count(b"{") + body.count(b"[") > MAX_JSON_DEPTH:
        return None
    try:
        negotiate(environ.get("CONTENT_TYPE", ""), environ.get("HTTP_ACCEPT", ""), bool(body))
        document, headers = answer(environ.get("HTTP_X_API_KEY"), environ.get("HTTP_AUTHORIZATION", ""),
                                   environ.get("REMOTE_ADDR") or "unknown", body)
    except Exception as exc:
        return handle_error(exc)

    def respond(environ, start_response):
        start_response("200 OK", [*headers.items(), ("Content-Length", str(len(document)))])
        return [document]
    return respond


DOOR = Door(ENDPOINT, verify_key, fast_answer, MAX_FAST_BODY)


def _invalid(detail, field):
    return ApiError(422, "Validation error", detail, pointer=f"/data/attributes/{field}")


def read_request(attributes: dict):
    """Return (key, scopes, ip, cost, token, reserve) from the request's attributes; 422 for a bad one."""
    secret = attributes.get("key")
    if not isinstance(secret, str) or not secret or len(secret) > 256:
        raise _invalid("key is the API key to check, as a string.", "key")
    scopes = attributes.get("scopes", [])
    if not isinstance(scopes, list) or not all(scope_rules.is_valid_scope(s) for s in scopes):
        raise _invalid("scopes is a list of scopes such as 'llm:gpt-4o'.", "scopes")
    ip = attributes.get("ip")
    if ip is not None:
        ip = _normal_address(ip) if isinstance(ip, str) else None
        if ip is None:
            raise _invalid("ip is the end client's IPv4 or IPv6 address.", "ip")
    cost = attributes.get("cost", 1)
    if not isinstance(cost, int) or isinstance(cost, bool) or not 0 <= cost <= MAX_COST:
        raise _invalid(f"cost is a whole number from 0 to {MAX_COST}.", "cost")
    token = attributes.get("token", False)
    if token is not True and token is not False:
        raise _invalid("token is true to get a signed token with a valid answer, else false.", "token")
    reserve = attributes.get("reserve", False)
    if reserve is not True and reserve is not False:
        raise _invalid("reserve is true to reserve the cost and settle it later, else false.", "reserve")
    return secret, scopes, ip, cost, token, reserve


@functools.lru_cache(maxsize=4096)  # services ask about the same clients again and again
def _normal_address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def verify_and_count(secret, scopes, ip, cost, now, audience: str | None = None,
                     reserve_for: str | None = None) -> bytes:
    """Verify at `now`, count the checked key's usage by outcome, and return the answer document;
    with an `audience` (the caller asked for a token), a valid answer carries a token for it; with
    `reserve_for`, a reservation of `cost` that this caller settles later (reservations.py)."""
    verdict = verify(secret, scopes, ip, cost, now)
    count(verdict, cost, now)
    meta = _meta(verdict, cost)
    if verdict.outcome is Outcome.VALID:
        if audience is not None:
            meta["token"] = signing.signer().issue(verdict.record, audience, now)
        if reserve_for is not None:
            reservation = _reserve(verdict.record, cost, now, reserve_for)
            if reservation is not None:
                meta["reservation"] = reservation.document()
    return encode({"meta": meta})


def _reserve(record, cost, now, caller):
    """The reservation of `cost`, just admitted for `record`; None when the counters' storage is
    unreachable and RATELIMIT_ON_STORAGE_ERROR is open (then nothing can be settled: the estimate
    stands, as after an expiry)."""
    try:
        return reservations.reservations().reserve(
            record.id, cost, allowances.budget_counter(record, now), now.replace(minute=0, second=0, microsecond=0),
            caller)
    except RedisError:
        allowances.tolerate_storage_error("reservation")
        return None


def _meta(verdict, cost) -> dict:
    record = verdict.record
    meta = {"valid": verdict.outcome is Outcome.VALID, "code": verdict.outcome.value}
    if verdict.missing_scopes:
        meta["missing-scopes"] = list(verdict.missing_scopes)
    for name in ("rate_limit", "quota", "budget"):
        if getattr(verdict, name) is not None:
            meta[name.replace("_", "-")] = getattr(verdict, name)
    if verdict.outcome is Outcome.VALID:
        meta["key"] = {
            "id": str(record.id), "owner-id": str(record.user_id), "name": record.name,
            "scopes": list(record.scopes), "metadata": record.metadata, "cost": cost,
            "expires-at": record.expires_at.isoformat() if record.expires_at else None,
        }
        if record.grace_until is not None:
            meta["key"]["rotation-grace-until"] = record.grace_until.isoformat()
    return meta


class FailureLimit:
    """RATE_LIMIT_AUTH_FAILURES for one client address, in the limiter's storage."""

    def __init__(self, address: str):
        self.limits = _parsed(current_app.config["RATE_LIMIT_AUTH_FAILURES"])
        self.bucket = (current_app.config["RATELIMIT_KEY_PREFIX"], FAILURE_SCOPE, address)

    def count(self, refusal: ApiError):
        """Count a failed authentication; 429 instead of `refusal` once the address is over its limit."""
        wait = self.hit()
        if wait is not None:
            raise ApiError(429, "Too many requests", "Too many failed authentications from this address.",
                           code="RATE_LIMITED", headers=retry_after(wait)) from refusal

    def hit(self) -> int | None:
        """Count a failed authentication; return the seconds to wait once the address is over its
        limit, else None (also under the `open` storage error policy while the storage is unreachable)."""
        try:
            exceeded = [item for item in self.limits if not limiter.limiter.hit(item, *self.bucket)]
        except RedisError:
            allowances.tolerate_storage_error("failed-authentication limit")
            return None
        return max(item.get_expiry() for item in exceeded) if exceeded else None  # windows end within their length


@functools.lru_cache(maxsize=8)
def _parsed(text):
    return tuple(parse_many(text))


def init_app(app):
    """The pipeline counts this endpoint's limits and usage itself; the token signer is per process."""
    from app.api import reservations as reservation_views

    signing.init_app(app)
    reservations.init_app(app)
    limits_itself(app, ENDPOINT)
    reservation_views.init_app(app)
