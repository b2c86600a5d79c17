"""The `api-keys` resource: ApiKeyList, ApiKeyDetail and ApiKeyRelationship, hanging off the user."""
from flask import current_app, request
from flask_rest_jsonapi_next import ResourceDetail, ResourceList, ResourceRelationship
from flask_rest_jsonapi_next.querystring import QueryStringManager
from sqlalchemy.orm import selectinload
from werkzeug.datastructures import ImmutableMultiDict

from app.api import api
from app.api.helpers.audit import AuditedLayer
from app.api.helpers.auth import Guarded, current_actor, require
from app.api.helpers.documents import ClientDocuments, refuse_client_id, relationship_document, secret_headers
from app.api.helpers.errors import ApiError
from app.api.helpers.filters import CheckedFilters, FilterRules
from app.api.helpers.permissions import (
    check_key_change,
    get_owned_key,
    get_visible_user,
    inherited_columns,
    owner_filter,
)
from app.api.schema.api_key import ApiKeyCreatedSchema, ApiKeySchema
from app.extensions import db
from app.models import ApiKey, User
from app.models.types import utcnow
from app.services import key_rules, lifecycle, narrowing
from app.services.key_cache import refresh_key_cache

KEY_FILTERS = FilterRules(
    names=frozenset({"name", "description", "created_at", "expires_at", "last_used_at"}),
    operators=frozenset({"eq", "ne", "in_", "notin_", "like", "ilike", "startswith", "endswith", "contains",
                         "lt", "le", "gt", "ge", "is_", "isnot", "between"}),
    dates=frozenset({"created_at", "expires_at", "last_used_at"}),
)
# Simple filters handled here rather than by the library: status is partly derived, tags are JSON.
CUSTOM_FILTERS = ("filter[status]", "filter[tag]")
STATUSES = ("active", "suspended", "revoked", "expired")


def check_expiry(expires_at):
    """Apply the lifetime rule the CLI shares (services/key_rules.py) as a 422 on expires-at."""
    try:
        key_rules.key_expiry(expires_at, utcnow(), current_app.config["API_KEY_MAX_LIFETIME_DAYS"])
    except ValueError as error:
        raise ApiError(422, "Validation error", f"expires-at {error}",
                       pointer="/data/attributes/expires-at") from None


def _apply_allowances(data):
    for kind in ("quota", "budget"):
        if kind in data:
            value = data.pop(kind) or {}
            data[f"{kind}_limit"], data[f"{kind}_period"] = value.get("limit"), value.get("period")


class ApiKeyLayer(CheckedFilters, AuditedLayer):
    target_type = "key"
    filter_rules = KEY_FILTERS

    def update_action(self, obj, changes):
        return "key.revoke" if obj.status == "revoked" and "status" in changes else "key.update"

    def query(self, view_kwargs):
        """The caller's keys (an admin's: everyone's), or one user's keys for /users/<id>/api-keys."""
        actor = require("keys:read")
        query = owner_filter(self.session.query(ApiKey), ApiKey.user_id, actor)
        if view_kwargs.get("id") is not None:
            get_visible_user(view_kwargs["id"], actor)
            query = query.filter(ApiKey.user_id == view_kwargs["id"])
        status, tag = request.args.get("filter[status]"), request.args.get("filter[tag]")
        if status is not None:
            query = query.filter(_status_clause(status))
        if tag is not None:
            query = query.filter(ApiKey.tags.cast(db.String).contains(f'"{tag}"', autoescape=True))
        if not request.args.get("sort"):
            query = query.order_by(ApiKey.id)
        if "user" in request.args.get("include", "").split(","):
            return query  # the library eager-loads what is included
        return query.options(selectinload(ApiKey.user))  # for the resource linkage

    def retrieve_object_query(self, view_kwargs, filter_field, filter_value):
        query = super().retrieve_object_query(view_kwargs, filter_field, filter_value)
        return owner_filter(query, ApiKey.user_id, require())

    def before_create_object(self, data, view_kwargs):
        actor = require("keys:write")
        refuse_client_id(data)
        owner_id = int(data.pop("user", None) or actor.user_id)
        if owner_id != actor.user_id:
            if not actor.is_admin:
                raise ApiError(403, "Forbidden", "Only an administrator may create keys for another user.",
                               code="ADMIN_REQUIRED", pointer="/data/relationships/user")
            if db.session.get(User, owner_id) is None:
                raise ApiError(404, "Not found", "User not found.", pointer="/data/relationships/user")
        if data.pop("revoked_at", None) is not None:
            raise ApiError(422, "Validation error", "A new key cannot be revoked.",
                           pointer="/data/attributes/revoked-at")
        _apply_allowances(data)
        check_key_change(actor, None, inherited_columns(actor, data))
        check_expiry(data.get("expires_at"))
        try:
            lifecycle.reserve_key_slot(owner_id, current_app.config["API_KEY_MAX_PER_USER"])
        except lifecycle.KeyLimitError as error:
            raise ApiError(409, "Too many keys", str(error), code="KEY_LIMIT_REACHED") from None
        data.update(lifecycle.new_secret_fields(current_app.config["API_KEY_PREFIX"]), user_id=owner_id)

    def before_update_object(self, obj, data, view_kwargs):
        actor = require("keys:write")
        data.pop("id", None)  # checked against the URL by ClientDocuments
        if "user" in data and str(data.pop("user")) != str(obj.user_id):
            raise ApiError(403, "Forbidden", "A key cannot be moved to another owner.",
                           code="OWNER_IMMUTABLE", pointer="/data/relationships/user")
        _apply_allowances(data)
        check_key_change(actor, obj, {**narrowing.columns_of(obj), **data})
        if obj.status == "revoked":
            raise ApiError(409, "Conflict", "A revoked key cannot be changed.", code="KEY_REVOKED")
        if "expires_at" in data:
            check_expiry(data["expires_at"])
        if data.pop("revoked_at", None) is not None:  # PATCH revoked-at: revoke, as the design says
            lifecycle.revoke(obj)

    def after_create_object(self, obj, data, view_kwargs):
        refresh_key_cache()  # this worker may remember the new digest as unknown

    def after_update_object(self, obj, data, view_kwargs):
        refresh_key_cache()

    def before_delete_object(self, obj, view_kwargs):
        check_key_change(require("keys:write"), obj, None)
        super().before_delete_object(obj, view_kwargs)

    def after_delete_object(self, obj, view_kwargs):
        refresh_key_cache()


def _status_clause(status):
    now = utcnow()
    if status not in STATUSES:
        raise ApiError(400, "Invalid filter", f"status is one of {', '.join(STATUSES)}.",
                       parameter="filter[status]")
    return ApiKey.status_clause(status, now)


def _layer():
    # A fresh dict per resource: the library pops "class" out of the dict it is given.
    return {"class": ApiKeyLayer, "session": db.session, "model": ApiKey}
_read_write = {"GET": "keys:read", "POST": "keys:write", "PATCH": "keys:write", "DELETE": "keys:write"}


class ApiKeyList(Guarded, ClientDocuments, ResourceList):
    """GET: the caller's keys (admins: all), or one user's. POST: create; the secret is in this 201 only."""

    schema = ApiKeySchema
    post_response_schema = ApiKeyCreatedSchema
    methods = ["GET", "POST"]
    required_scopes = _read_write
    view_kwargs = True
    data_layer = _layer()

    def get_collection(self, qs, kwargs, filters=None, as_query=True):
        generic = ImmutableMultiDict([(k, v) for k, v in qs.qs.items(multi=True) if k not in CUSTOM_FILTERS])
        qs = QueryStringManager(generic, self.schema)
        return super().get_collection(qs, kwargs, filters=None, as_query=as_query)

    @staticmethod
    def served_methods(view_args) -> set:
        """GET and POST at /v1/api-keys; GET only at a user's /v1/users/<id>/api-keys, which shares
        the route (what a 405's Allow and a CORS preflight name there: helpers/errors.served_methods)."""
        return {"GET"} if view_args.get("id") is not None else {"GET", "POST"}

    def before_post(self, args, kwargs, data=None):
        if "POST" not in self.served_methods(kwargs):
            raise ApiError(405, "Method not allowed", "Create keys with POST /v1/api-keys.")

    def after_post(self, result):
        document, status, headers = result
        return document, status, {**headers, **secret_headers(self.post_response_schema)}


class ApiKeyDetail(Guarded, ClientDocuments, ResourceDetail):
    schema = ApiKeySchema
    methods = ["GET", "PATCH", "DELETE"]
    required_scopes = _read_write
    patch_schema_kwargs = {"partial": True}
    data_layer = _layer()


class ApiKeyRelationship(Guarded, ResourceRelationship):
    """The owner of a key: readable, never transferable."""

    schema = ApiKeySchema
    methods = ["GET", "PATCH"]
    required_scopes = _read_write
    data_layer = _layer()

    def before_patch(self, args, kwargs, json_data=None):
        get_owned_key(kwargs["id"], current_actor())
        raise ApiError(403, "Forbidden", "A key cannot be moved to another owner.", code="OWNER_IMMUTABLE",
                       pointer="/data")

    def after_get(self, result):
        return relationship_document(result)


api.route(ApiKeyList, "api_key_list", "/api-keys", "/users/<int:id>/api-keys")
api.route(ApiKeyDetail, "api_key_detail", "/api-keys/<int:id>")
api.route(ApiKeyRelationship, "api_key_user_relationship", "/api-keys/<int:id>/relationships/user")
