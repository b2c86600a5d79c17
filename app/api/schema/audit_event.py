"""The `audit-events` resource: read-only. Who acted and on what are relationships:

- `actor` (users): who acted; none for an anonymous attempt (a failed login);
- `actor-key` (api-keys): the key the actor acted with; none for a session;
- `subject` (users): whose account or key the event is about (it is in their trail);
- `target` (api-keys): the key acted on; none for an account's events, whose target is their subject.
"""
from marshmallow_jsonapi import fields

from app.api.helpers.auth import current_actor
from app.api.helpers.permissions import is_visible
from app.api.schema import Relationship, Schema, dasherize

USERS = {"type_": "users", "schema": "UserSchema", "related_view": "v1.user_detail"}
KEYS = {"type_": "api-keys", "schema": "ApiKeySchema", "related_view": "v1.api_key_detail"}


class StoredLink(Relationship):
    """A relationship an event holds by id, without a foreign key (the trail outlives the rows it
    names): its linkage is the id stored in `attribute`, a deleted row's too. `include` adds the
    row, read through the model's relationship `row`, only if the viewer may see it: an owner sees
    an administrator's act on their key, never the administrator's account."""

    def __init__(self, row, attribute, **kwargs):
        self.row = row
        super().__init__(attribute=attribute, related_view_kwargs={"id": f"<{attribute}>"},
                         include_resource_linkage=True, dump_only=True, **kwargs)

    def _serialize(self, value, attr, obj):
        document = {"data": None if value is None else self.get_resource_linkage(value)}
        related = self.get_related_url(obj)
        if related:
            document["links"] = {"related": related}
        row = getattr(obj, self.row) if self.include_data else None
        if row is not None and is_visible(row, current_actor()):
            self._serialize_included(row)
        return document


class AuditEventSchema(Schema):
    class Meta:
        type_ = "audit-events"
        self_view = "v1.audit_event_detail"
        self_view_kwargs = {"id": "<id>"}
        self_view_many = "v1.audit_event_list"
        inflect = dasherize  # no `model`: AuditLayer eager-loads what is included

    id = fields.Str(dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    action = fields.Str(dump_only=True)
    ip = fields.Str(dump_only=True)
    user_agent = fields.Str(dump_only=True)
    changes = fields.List(fields.Str(), dump_only=True)
    actor = StoredLink("actor", "actor_user_id", **USERS)
    actor_key = StoredLink("actor_key", "actor_key_id", **KEYS)
    subject = StoredLink("subject", "subject_user_id", **USERS)
    target = StoredLink("target_key", "target_key_id", **KEYS)
