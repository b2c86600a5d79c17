"""POST /v1/api-keys/verify: other services ask whether a key may do something.

The caller is a service holding a key with `keys:verify` (only admins grant it) or an admin's JWT.
The key to check travels in the body, never in a URL. A well-formed request always answers 200
with `valid` and a `code`; no answer ever carries a secret or a digest.

Two ways in, one answer. This is the services' hot path, so `VerifyFastPath`, a WSGI layer in
front of Flask, answers the common request (a key with keys:verify, a well-formed JSON body) without
Flask's request machinery. Everything else, an admin's JWT, CORS, every error, goes on to the Flask
view. Both read the request, authenticate the caller and write the answer with the functions below.
"""
import functools
import io
import ipaddress
import json

from flask import current_app, make_response
from limits import parse_many
from redis.exceptions import RedisError

from app.api import bp
from app.api.helpers.auth import credential_from, require
from app.api.helpers.errors import JSONAPI, ApiError, handle_error
from app.api.helpers.ratelimit import client_ip
from app.api.helpers.requests import JSON_TYPES, attributes_of, json_body, strict_loads
from app.extensions import limiter
from app.models.types import utcnow
from app.services import scopes as scope_rules
from app.services import allowances, usage
from app.services.verifier import Outcome, check_key, verify

PATH = "/v1/api-keys/verify"
FAILURE_SCOPE = "verify-auth-failure"
MAX_COST = 10**9
MAX_FAST_BODY = 16 * 1024  # larger bodies are unusual: the Flask view reads them
HEADERS = {"Content-Type": JSONAPI, "Cache-Control": "no-store"}


def _invalid(detail, field):
    return ApiError(422, "Validation error", detail, pointer=f"/data/attributes/{field}")


def read_request(attributes: dict):
    """Return (key, scopes, ip, cost) from the request's attributes; 422 for a bad one."""
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
    return secret, scopes, ip, cost


@functools.lru_cache(maxsize=4096)  # services ask about the same clients again and again
def _normal_address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def verify_and_count(secret, scopes, ip, cost) -> bytes:
    """Verify, count the checked key's usage by outcome, and return the answer document."""
    verdict = verify(secret, scopes, ip, cost)
    if verdict.record is not None:
        buffer = usage.buffer()
        admitted = verdict.outcome is Outcome.VALID
        buffer.count(verdict.record.id, verdict.outcome.value, cost if admitted else 0)
        if admitted:
            buffer.key_used(verdict.record.id, utcnow())
    return _document(verdict, cost)


def _document(verdict, cost) -> bytes:
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
    return json.dumps({"meta": meta, "jsonapi": {"version": "1.0"}}, sort_keys=True).encode()


@bp.post("/api-keys/verify")
def verify_key():
    """Return 200 with `valid`, `code` and, when valid, the key's id, owner, scopes and allowances.

    Callers that fail to authenticate are limited per client IP (RATE_LIMIT_AUTH_FAILURES); once
    an address is over it, it gets 429 before any lookup. Authenticated services are never limited
    here: the limits that apply are those of the keys they check."""
    failures = _failure_limits(current_app.config["RATE_LIMIT_AUTH_FAILURES"])
    bucket = [current_app.config["RATELIMIT_KEY_PREFIX"], FAILURE_SCOPE, client_ip()]
    if not _within(failures, lambda item: limiter.limiter.test(item, *bucket), True):
        raise ApiError(429, "Too many requests", "Too many failed authentications from this address.",
                       code="RATE_LIMITED", headers={"Retry-After": str(failures[0].get_expiry())})
    try:
        actor = require("keys:verify")
        if actor.key_id is None and not actor.is_admin:
            raise ApiError(403, "Forbidden", "Verification needs a key with keys:verify or an admin's session.",
                           code="INSUFFICIENT_SCOPES")
    except ApiError:
        _within(failures, lambda item: limiter.limiter.hit(item, *bucket), None)
        raise
    return make_response(verify_and_count(*read_request(json_body())), 200, HEADERS)


@functools.lru_cache(maxsize=8)
def _failure_limits(text):
    return tuple(parse_many(text))


def _within(items, check, on_storage_error):
    """Return whether `check` holds for every limit item; the storage error policy decides when
    the limiter storage is unreachable (`on_storage_error` is then the answer under `open`)."""
    try:
        return all([check(item) for item in items])
    except RedisError:
        allowances.tolerate_storage_error("failed-authentication limit")
        return on_storage_error


class VerifyFastPath:
    """WSGI middleware: answers POST /v1/api-keys/verify from a service key, or passes it on.

    It answers only when the Flask view would answer 200 with nothing more to do: no query string
    (where credentials are refused), no Origin (CORS), a JSON body that reads, and a caller key that
    is valid, holds keys:verify and has no quota of its own (which the Flask path counts). It decides
    before it counts anything, so a request passed on is counted once, by the view.
    """

    def __init__(self, app, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        if (environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST"
                or environ.get("QUERY_STRING") or "HTTP_ORIGIN" in environ
                or environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower() not in JSON_TYPES
                or not environ.get("CONTENT_LENGTH", "").isdigit()
                or int(environ["CONTENT_LENGTH"]) > MAX_FAST_BODY or "HTTP_TRANSFER_ENCODING" in environ):
            return self.wsgi_app(environ, start_response)
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        with self.app.app_context():
            try:
                request = self._accept(environ, body)
                if request is not None:
                    answer = verify_and_count(*request)
                    start_response("200 OK", [*HEADERS.items(), ("Content-Length", str(len(answer)))])
                    return [answer]
            except Exception as exc:  # e.g. limits storage down with the closed policy: as the view would
                return handle_error(exc)(environ, start_response)
        environ["wsgi.input"] = io.BytesIO(body)
        return self.wsgi_app(environ, start_response)

    @staticmethod
    def _accept(environ, body):
        """Return (key, scopes, ip, cost) when this request is ours to answer, else None."""
        try:
            kind, credential = credential_from(environ.get("HTTP_X_API_KEY"), environ.get("HTTP_AUTHORIZATION", ""))
            if kind != "key":
                return None
            request = read_request(attributes_of(strict_loads(body)))
        except (ApiError, ValueError, RecursionError):
            return None
        outcome, caller = check_key(credential, environ.get("REMOTE_ADDR"))
        if (outcome is not Outcome.VALID or caller.quota_limit is not None
                or not scope_rules.key_allows(caller.scopes, caller.owner_is_admin, "keys:verify")):
            return None
        usage.buffer().key_used(caller.id, utcnow())  # as any request authenticated by a key
        return request


def init_app(app):
    """Put the fast path in front of the Flask application (inside ProxyFix, if any)."""
    app.wsgi_app = VerifyFastPath(app, app.wsgi_app)
