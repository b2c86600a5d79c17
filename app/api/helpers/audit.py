"""Audit events, added to the session of the change they record, so both commit or neither does."""
from flask import g, has_request_context, request
from flask_rest_jsonapi_next import SqlalchemyDataLayer
from sqlalchemy import inspect

from app.extensions import db
from app.models import AuditEvent
from app.services.changes import announce

# Secret-bearing columns are named by what they are, never shown by value (no value is ever stored).
FIELD_NAMES = {"password_hash": "password", "digest": "secret", "previous_digest": "secret",
               "key_metadata": "metadata"}
NOT_CHANGES = {"updated_at", "version", "start", "last4", "previous_valid_until"}


# Pass as `actor` to record an event with no actor, whatever credential the request carried.
ANONYMOUS = object()
# Audited changes that can make a worker's cached key record stale: announced to every worker.
# (A new key is not cached anywhere yet; a reset changes counters, not the record.)
STALE_KEY = {"key.update", "key.revoke", "key.suspend", "key.reactivate", "key.rotate", "key.delete"}
STALE_ACCOUNT = {"user.update", "user.delete", "user.promote"}


def audit(action, target_type=None, target_id=None, subject_user_id=None, changes=(), actor=None):
    """Add an AuditEvent for `action` to the current session; the caller's commit writes it.

    The actor is the request's, unless given (ANONYMOUS: none)."""
    if actor is None and has_request_context():
        actor = g.get("actor")
    if actor is ANONYMOUS:
        actor = None
    event = AuditEvent(
        action=action, target_type=target_type, target_id=None if target_id is None else str(target_id),
        subject_user_id=subject_user_id, changes=sorted(set(changes)),
        actor_user_id=actor.user_id if actor else None, actor_key_id=actor.key_id if actor else None,
    )
    if has_request_context():
        event.ip = request.remote_addr
        event.user_agent = (request.user_agent.string or "")[:255] or None
    db.session.add(event)
    if action in STALE_KEY:
        announce(key_id=int(target_id))
    elif action in STALE_ACCOUNT:
        announce(user_id=int(target_id))
    return event


def changed_fields(obj) -> list:
    """Return the names of the attributes changed on `obj` since it was loaded."""
    state = inspect(obj)
    names = []
    for attr in state.mapper.column_attrs:
        if attr.key not in NOT_CHANGES and state.attrs[attr.key].history.has_changes():
            names.append(FIELD_NAMES.get(attr.key, attr.key).replace("_", "-"))
    return names


class AuditedLayer(SqlalchemyDataLayer):
    """A data layer that records `<type>.create`, `<type>.update` and `<type>.delete`."""

    target_type = None

    def subject_of(self, obj):
        return obj.user_id

    def update_action(self, obj, changes):
        return f"{self.target_type}.update"

    def before_commit(self, obj):
        super().before_commit(obj)
        if inspect(obj).persistent:
            changes = changed_fields(obj)
            audit(self.update_action(obj, changes), self.target_type, obj.id, self.subject_of(obj), changes)
        else:  # a creation: flush first, so the event can name the new id
            self.session.add(obj)
            self.session.flush()
            audit(f"{self.target_type}.create", self.target_type, obj.id, self.subject_of(obj))

    def before_delete_object(self, obj, view_kwargs):
        audit(f"{self.target_type}.delete", self.target_type, obj.id, self.subject_of(obj))
