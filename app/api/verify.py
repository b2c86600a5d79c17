"""POST /v1/api-keys/verify: other services ask whether a key may do something.

The caller is a service holding a key with `keys:verify` (only admins grant it) or an admin's JWT.
The key to check travels in the body, never in a URL. A well-formed request always answers 200
with `valid` and a `code`; no answer ever carries a secret or a digest.
"""
import ipaddress

from flask import json, make_response

from app.api import bp
from app.api.helpers.auth import require
from app.api.helpers.errors import JSONAPI, ApiError
from app.api.helpers.requests import json_body
from app.models.types import utcnow
from app.services import scopes as scope_rules
from app.services import usage
from app.services.verifier import Outcome, verify

MAX_COST = 10**9


def _invalid(detail, field):
    return ApiError(422, "Validation error", detail, pointer=f"/data/attributes/{field}")


def _read_request():
    body = json_body()
    secret = body.get("key")
    if not isinstance(secret, str) or not secret or len(secret) > 256:
        raise _invalid("key is the API key to check, as a string.", "key")
    scopes = body.get("scopes", [])
    if not isinstance(scopes, list) or not all(scope_rules.is_valid_scope(s) for s in scopes):
        raise _invalid("scopes is a list of scopes such as 'llm:gpt-4o'.", "scopes")
    ip = body.get("ip")
    if ip is not None:
        try:
            ip = str(ipaddress.ip_address(ip))
        except ValueError:
            raise _invalid("ip is the end client's IPv4 or IPv6 address.", "ip") from None
    cost = body.get("cost", 1)
    if not isinstance(cost, int) or isinstance(cost, bool) or not 0 <= cost <= MAX_COST:
        raise _invalid(f"cost is a whole number from 0 to {MAX_COST}.", "cost")
    return secret, scopes, ip, cost


def _answer(verdict, cost):
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
    response = make_response(json.dumps({"meta": meta, "jsonapi": {"version": "1.0"}}))
    response.headers["Content-Type"] = JSONAPI
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/api-keys/verify")
def verify_key():
    """Return 200 with `valid`, `code` and, when valid, the key's id, owner, scopes and allowances."""
    actor = require("keys:verify")
    if actor.key_id is None and not actor.is_admin:
        raise ApiError(403, "Forbidden", "Verification needs a key with keys:verify or an admin's session.",
                       code="INSUFFICIENT_SCOPES")
    secret, scopes, ip, cost = _read_request()
    verdict = verify(secret, scopes, ip, cost)
    if verdict.record is not None:
        buffer = usage.buffer()
        admitted = verdict.outcome is Outcome.VALID
        buffer.count(verdict.record.id, verdict.outcome.value, cost if admitted else 0)
        if admitted:
            buffer.key_used(verdict.record.id, utcnow())
    return _answer(verdict, cost)
