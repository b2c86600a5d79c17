"""GET /v1/audit-events: who did what, when, from where. Append-only: no write method exists.

A user sees the events they caused and the events about their own account and keys; an admin
sees every event. Filters: action, created-at (with gt/lt/ge/le), and by id the relationships
actor, actor-key, subject and target (`filter[target]=<key id>`: the events of one key).
"""
from flask import request
from flask_rest_jsonapi_next import ResourceDetail, ResourceList, SqlalchemyDataLayer
from sqlalchemy import or_
from sqlalchemy.orm import selectinload

from app.api import api
from app.api.helpers.auth import Guarded, require
from app.api.helpers.documents import ClientDocuments
from app.api.helpers.filters import CheckedFilters, FilterRules
from app.api.schema.audit_event import AuditEventSchema
from app.extensions import db
from app.models import AuditEvent

AUDIT_FILTERS = FilterRules(
    names=frozenset({"action", "created_at", "actor", "actor_key", "subject", "target"}),
    operators=frozenset({"eq", "ne", "in_", "lt", "le", "gt", "ge", "startswith"}),
    dates=frozenset({"created_at"}),
)


class AuditLayer(CheckedFilters, SqlalchemyDataLayer):
    filter_rules = AUDIT_FILTERS

    def _visible(self, query):
        actor = require("audit:read")
        if actor.is_admin:
            return query
        return query.filter(or_(AuditEvent.actor_user_id == actor.user_id,
                                AuditEvent.subject_user_id == actor.user_id))

    def query(self, view_kwargs):
        query = self._visible(self.session.query(AuditEvent))
        return query if request.args.get("sort") else query.order_by(AuditEvent.id.desc())

    def retrieve_object_query(self, view_kwargs, filter_field, filter_value):
        return self._visible(super().retrieve_object_query(view_kwargs, filter_field, filter_value))

    def eagerload_includes(self, query, qs):
        """Load the `include`d users and keys with the events, through the model's relationships (the
        library would load the schema's attributes: the stored ids). Unknown names are the library's 400."""
        fields = self.resource.schema._declared_fields
        rows = [getattr(fields.get(name), "row", None) for name in qs.include]
        return query.options(*(selectinload(getattr(AuditEvent, row)) for row in rows if row))


def _layer():
    return {"class": AuditLayer, "session": db.session, "model": AuditEvent}


class AuditEventList(Guarded, ClientDocuments, ResourceList):
    schema = AuditEventSchema
    methods = ["GET"]
    required_scopes = {"GET": "audit:read"}
    data_layer = _layer()


class AuditEventDetail(Guarded, ResourceDetail):
    schema = AuditEventSchema
    methods = ["GET"]
    required_scopes = {"GET": "audit:read"}
    data_layer = _layer()


api.route(AuditEventList, "audit_event_list", "/audit-events")
api.route(AuditEventDetail, "audit_event_detail", "/audit-events/<int:id>")
