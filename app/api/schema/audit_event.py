"""The `audit-event` resource: read-only."""
from marshmallow_jsonapi import fields
from marshmallow_jsonapi.flask import Schema

from app.api.schema import dasherize
from app.models import AuditEvent


class AuditEventSchema(Schema):
    class Meta:
        type_ = "audit-event"
        self_view = "v1.audit_event_detail"
        self_view_kwargs = {"id": "<id>"}
        self_view_many = "v1.audit_event_list"
        inflect = dasherize
        model = AuditEvent  # lets the library eager-load `include`d relationships

    id = fields.Str(dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    action = fields.Str(dump_only=True)
    actor_user_id = fields.Str(dump_only=True)
    actor_key_id = fields.Str(dump_only=True)
    subject_user_id = fields.Str(dump_only=True)
    target_type = fields.Str(dump_only=True)
    target_id = fields.Str(dump_only=True)
    ip = fields.Str(dump_only=True)
    user_agent = fields.Str(dump_only=True)
    changes = fields.List(fields.Str(), dump_only=True)
