"""Lifecycle actions on a key: revoke (final), suspend, reactivate, rotate; admins reset quotas.

A key may revoke, suspend and rotate the keys it covers (itself included); reactivating and
resetting an allowance lift a restriction, so they need a session (helpers/permissions)."""
from flask import current_app

from app.api import bp
from app.api.helpers.audit import audit, changed_fields
from app.api.helpers.auth import require, require_admin
from app.api.helpers.documents import check_type, document
from app.api.helpers.errors import ApiError
from app.api.helpers.permissions import check_key_change, get_owned_key, require_session
from app.api.helpers.requests import optional_json_body
from app.api.schema.api_key import ApiKeyCreatedSchema, ApiKeySchema
from app.extensions import db
from app.models.types import utcnow
from app.services import allowances, key_rules, lifecycle
from app.services.key_cache import refresh_key_cache


def _act(key_id, name, action):
    """Apply `action` to a key the caller may touch, record `key.<name>`, commit, return the key."""
    actor = require("keys:write")
    key = get_owned_key(key_id, actor)
    check_key_change(actor, key, None)
    try:
        action(key)
    except lifecycle.KeyStateError as error:
        db.session.rollback()
        raise ApiError(409, "Conflict", str(error), code="INVALID_KEY_STATE") from None
    audit(f"key.{name}", "key", key.id, key.user_id, changed_fields(key))
    db.session.commit()
    refresh_key_cache()
    return key


@bp.post("/api-keys/<int:key_id>/revoke")
def revoke_key(key_id):
    """Revoke a key for good; a second revoke is a 409."""
    return document(ApiKeySchema, _act(key_id, "revoke", lifecycle.revoke))


@bp.post("/api-keys/<int:key_id>/suspend")
def suspend_key(key_id):
    return document(ApiKeySchema, _act(key_id, "suspend", lifecycle.suspend))


@bp.post("/api-keys/<int:key_id>/reactivate")
def reactivate_key(key_id):
    """Lift a suspension; a key may not, whichever key it is (a suspension is the owner's call)."""
    require_session(require("keys:write"), "Reactivating a key")
    return document(ApiKeySchema, _act(key_id, "reactivate", lifecycle.reactivate))


@bp.post("/api-keys/<int:key_id>/rotate")
def rotate_key(key_id):
    """Return 201 with the new secret (shown once); `grace-period` seconds keep the old one valid."""
    check_type("api-keys")
    try:
        grace = key_rules.grace_seconds(optional_json_body().get("grace-period", 0),
                                        current_app.config["API_KEY_MAX_GRACE_SECONDS"])
    except ValueError as error:
        raise ApiError(422, "Validation error", f"grace-period {error}",
                       pointer="/data/attributes/grace-period") from None
    prefix = current_app.config["API_KEY_PREFIX"]
    return document(ApiKeyCreatedSchema, _act(key_id, "rotate", lambda key: lifecycle.rotate(key, grace, prefix)), 201)


@bp.post("/api-keys/<int:key_id>/<any(quota, budget):kind>/reset")
def reset_allowance(key_id, kind):
    """Admins only: start the key's current quota or budget window over."""
    actor = require_admin("keys:write")
    require_session(actor, f"Resetting a {kind}")
    key = get_owned_key(key_id, actor)
    allowance = next((a for a in allowances.allowances_of(key) if a.kind == kind), None)
    if allowance is None:
        raise ApiError(409, "Conflict", f"The key has no {kind}.", code=f"NO_{kind.upper()}")
    allowances.reset(allowance, utcnow())  # first: if the storage is down, nothing is recorded either
    audit(f"key.{kind}_reset", "key", key.id, key.user_id)
    db.session.commit()
    return document(ApiKeySchema, key)
