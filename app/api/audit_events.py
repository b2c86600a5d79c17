"""GET /v1/audit-events: who did what, when, from where. Append-only: no write method exists.

A user sees the events they caused and the events about their own account and keys; an admin
sees every event. Filters: action, target-type, target-id, created-at (with gt/lt/ge/le).
"""
from flask_rest_jsonapi_next import ResourceDetail, ResourceList, SqlalchemyDataLayer
from flask_rest_jsonapi_next.exceptions import InvalidFilters
from sqlalchemy import or_

from app.api import api
from app.api.helpers.auth import Guarded, require
from app.api.helpers.requests import check_filter_value
from app.api.schema.audit_event import AuditEventSchema
from app.extensions import db
from app.models import AuditEvent

FILTERABLE = {"action", "target_type", "target_id", "created_at", "actor_user_id", "actor_key_id"}
OPERATORS = {"eq", "ne", "in_", "lt", "le", "gt", "ge", "startswith"}


def _check_filters(nodes):
    for node in nodes:
        if not isinstance(node, dict):
            raise InvalidFilters("Each filter must be an object.")
        if node.get("name") not in FILTERABLE or node.get("op") not in OPERATORS or "field" in node:
            raise InvalidFilters(f"Filter on one of {sorted(FILTERABLE)} with an operator in {sorted(OPERATORS)}.")
        check_filter_value(node["op"], node.get("val"), is_date=node["name"] == "created_at")


class AuditLayer(SqlalchemyDataLayer):
    def _visible(self, query):
        actor = require("audit:read")
        if actor.is_admin:
            return query
        return query.filter(or_(AuditEvent.actor_user_id == actor.user_id,
                                AuditEvent.subject_user_id == actor.user_id))

    def query(self, view_kwargs):
        return self._visible(self.session.query(AuditEvent)).order_by(AuditEvent.id.desc())

    def retrieve_object_query(self, view_kwargs, filter_field, filter_value):
        return self._visible(super().retrieve_object_query(view_kwargs, filter_field, filter_value))

    def filter_query(self, query, filter_info, model):
        _check_filters(filter_info or ())
        return super().filter_query(query, filter_info, model)


def _layer():
    return {"class": AuditLayer, "session": db.session, "model": AuditEvent}


class AuditEventList(Guarded, ResourceList):
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
