"""The one place that decides what an actor may touch, and what a key may do to keys.

Rows: every list query, detail lookup, action and relationship goes through `owner_filter`, so
another user's key or account is a 404, identical to a missing one; rows `include`d by an audit
event go through `is_visible`, its rule for a loaded row, and are left out when not visible.

Keys as principals: a request made with a key is strictly narrower than its owner's session.
`check_key_change` is called by every path that mints, changes or acts on a key (create, PATCH,
DELETE, revoke, suspend, rotate); `require_session` by everything a key may never do at all
(reactivate, quota and budget resets, password and email changes, account deletion, ending
sessions), because each of them lifts a restriction or touches a credential. The rule:
- a key acts only on keys it covers in every dimension (scopes, allowed IPs, expiry, rate limit,
  quota, budget; see app/services/narrowing.py), itself included: 403 KEY_NOT_COVERED;
- what a key mints or changes stays covered by it: unset restrictions are inherited, wider ones
  are refused (403 SCOPE_NOT_GRANTABLE / RESTRICTION_NOT_GRANTABLE);
- a secret kept valid by a rotation's grace period may call the API but manage no key (403
  ROTATED_SECRET): it is the secret most likely to have leaked;
- only an admin grants admin-only scopes, and a key uses them only while its owner is an admin
  (Actor.allows).
"""
from collections.abc import Mapping

from app.api.helpers.auth import Actor
from app.api.helpers.errors import ApiError, not_found
from app.extensions import db
from app.models import ApiKey, User
from app.services import narrowing
from app.services import scopes as scope_rules

POINTER = "/data/attributes/"


def owner_filter(query, owner_column, actor: Actor):
    """Return `query` narrowed to rows owned by the actor, unless the actor is an admin."""
    if actor.is_admin:
        return query
    return query.filter(owner_column == actor.user_id)


def is_visible(row: User | ApiKey, actor: Actor) -> bool:
    """`owner_filter`'s rule for a row already loaded (a user or key `include`d by an audit event)."""
    return actor.is_admin or (row.id if isinstance(row, User) else row.user_id) == actor.user_id


def get_owned_key(key_id: int, actor: Actor) -> ApiKey:
    """Return the key if the actor may touch it; raise 404 otherwise."""
    key = owner_filter(db.session.query(ApiKey), ApiKey.user_id, actor).filter(ApiKey.id == key_id).first()
    if key is None:
        raise not_found("API key")
    return key


def get_visible_user(user_id: int, actor: Actor) -> User:
    """Return the user if it is the actor or the actor is an admin; raise 404 otherwise."""
    user = owner_filter(db.session.query(User), User.id, actor).filter(User.id == user_id).first()
    if user is None:
        raise not_found("User")
    return user


def require_session(actor: Actor, what: str):
    """Raise 403 SESSION_REQUIRED when the actor is a key: `what` needs the owner's own session."""
    if actor.key is not None:
        raise ApiError(403, "Session required", f"{what} needs a signed-in session; an API key may not do it.",
                       code="SESSION_REQUIRED")


def check_key_change(actor: Actor, before: ApiKey | None, after: Mapping | None):
    """Refuse a change to keys the actor may not make: `before` is the key acted on (None for a
    creation), `after` its restricting columns once changed (None when they do not change)."""
    new_scopes = set(after["scopes"] or ()) if after is not None else set()
    if before is not None:
        new_scopes -= set(before.scopes or ())  # kept ones were granted before
    admin_only = sorted(scope for scope in new_scopes if scope_rules.is_admin_only(scope))
    if admin_only and not actor.is_admin:
        raise ApiError(403, "Scope not grantable", f"Only an administrator may grant {admin_only[0]!r}.",
                       code="SCOPE_NOT_GRANTABLE", pointer=POINTER + "scopes")
    if actor.key is None:
        return
    if actor.in_rotation_grace:
        raise ApiError(403, "Rotated secret", "This secret was replaced by a rotation: it may still call the "
                       "API during its grace period, but may not manage keys.", code="ROTATED_SECRET")
    own = narrowing.Restrictions.of(narrowing.columns_of(actor.key))
    if before is not None:
        wider = narrowing.first_widening(own, narrowing.Restrictions.of(narrowing.columns_of(before)))
        if wider is not None:
            raise ApiError(403, "Key not covered", f"The target key exceeds the calling key in {wider}: only "
                           "a session, or a key at least as broad in every dimension, may act on it.",
                           code="KEY_NOT_COVERED")
    if after is not None:
        wider = narrowing.first_widening(own, narrowing.Restrictions.of(after))
        if wider == "scopes":
            raise ApiError(403, "Scope not grantable", "The calling key does not hold every scope given.",
                           code="SCOPE_NOT_GRANTABLE", pointer=POINTER + "scopes")
        if wider is not None:
            raise ApiError(403, "Restriction not grantable", f"A key can only narrow its own {wider}: "
                           "not wider, not absent.", code="RESTRICTION_NOT_GRANTABLE", pointer=POINTER + wider)


def inherited_columns(actor: Actor, data: dict) -> dict:
    """Fill `data` (a new key's attributes) with the calling key's restrictions it does not set."""
    if actor.key is not None:
        data.update(narrowing.inherit(narrowing.columns_of(actor.key), data))
    return data
