"""The `users` resource: sign-up, the admin's list, and self-or-admin detail."""
from flask import current_app
from flask_rest_jsonapi_next import ResourceDetail, ResourceList, ResourceRelationship

from app.api import api
from app.api.helpers.audit import AuditedLayer, audit
from app.api.helpers.auth import Guarded, current_actor, require, require_admin
from app.api.helpers.documents import ClientDocuments, refuse_client_id, relationship_document
from app.api.helpers.errors import ApiError
from app.api.helpers.permissions import get_visible_user, owner_filter, require_session
from app.api.helpers.ratelimit import client_ip
from app.api.schema.user import UserSchema
from app.extensions import db, limiter
from app.models import User
from app.services import sessions
from app.services.key_cache import refresh_key_cache
from app.services.passwords import hash_password, verify_password


def _forbid_admin_flag(data):
    """Only an admin's session sets is-admin: a key promoting an account whose password its holder
    knows would obtain an unscoped admin session."""
    if "is_admin" not in data:
        return
    actor = current_actor()
    if not (actor is not None and actor.is_admin):
        raise ApiError(403, "Forbidden", "Only an administrator may set is-admin.",
                       code="ADMIN_REQUIRED", pointer="/data/attributes/is-admin")
    require_session(actor, "Setting is-admin")


def _check_email_free(email, user_id=None):
    existing = db.session.scalar(db.select(User.id).where(User.email == email))
    if existing is not None and existing != user_id:
        raise ApiError(409, "Conflict", "An account with this email already exists.",
                       pointer="/data/attributes/email")


class UserLayer(AuditedLayer):
    target_type = "user"

    def subject_of(self, obj):
        return obj.id

    def retrieve_object_query(self, view_kwargs, filter_field, filter_value):
        """Another user's id is not found, exactly like a missing one."""
        query = super().retrieve_object_query(view_kwargs, filter_field, filter_value)
        return owner_filter(query, User.id, require())

    def before_create_object(self, data, view_kwargs):
        refuse_client_id(data)
        data.pop("current_password", None)  # nothing to prove for a new account
        data["email"] = data["email"].lower()
        _check_email_free(data["email"])
        data["password_hash"] = hash_password(data.pop("password"))

    def before_update_object(self, obj, data, view_kwargs):
        """A password or an email is changed only by a session: one's own with the current password
        (and rate limited, so neither the password nor taken emails can be probed); a new password
        ends every other session of the account."""
        data.pop("id", None)  # checked against the URL by ClientDocuments
        current_password = data.pop("current_password", None)
        if "email" in data:
            data["email"] = data["email"].lower()
            if data["email"] == obj.email:
                del data["email"]  # unchanged: nothing to prove
        if "email" not in data and "password" not in data:
            return
        actor = require()
        require_session(actor, "Changing a password or an email")
        with limiter.limit(current_app.config["RATE_LIMIT_ACCOUNT_CHANGE"], scope="account-change",
                           key_func=lambda: f"account-change:{obj.id}"):
            if obj.id == actor.user_id and not (isinstance(current_password, str)
                                                and verify_password(obj.password_hash, current_password)):
                raise ApiError(403, "Current password required", "Changing your own password or email needs "
                               "your current password in current-password.", code="CURRENT_PASSWORD_REQUIRED",
                               pointer="/data/attributes/current-password")
            if "email" in data:
                _check_email_free(data["email"], obj.id)
        if "password" in data:
            data["password_hash"] = hash_password(data.pop("password"))
            keep = actor.session_id if obj.id == actor.user_id else None
            if sessions.end_all(obj.id, keep=keep):
                audit("auth.sessions_ended", "user", obj.id, obj.id, ["password"])

    def before_delete_object(self, obj, view_kwargs):
        require_session(require(), "Deleting an account")
        super().before_delete_object(obj, view_kwargs)

    def after_update_object(self, obj, data, view_kwargs):
        refresh_key_cache()  # cached key records carry the owner's admin flag

    def after_delete_object(self, obj, view_kwargs):
        refresh_key_cache()  # the owner's keys went with the account


def _layer():
    # A fresh dict per resource: the library pops "class" out of the dict it is given.
    return {"class": UserLayer, "session": db.session, "model": User}


class UserList(Guarded, ClientDocuments, ResourceList):
    """GET: every account (admins only). POST: sign up (anyone; is-admin only by an admin)."""

    schema = UserSchema
    methods = ["GET", "POST"]
    required_scopes = {"GET": "users:read"}
    anonymous_methods = ("POST",)
    data_layer = _layer()

    def before_get(self, args, kwargs):
        require_admin("users:read")

    def before_post(self, args, kwargs, data=None):
        with limiter.limit(current_app.config["RATE_LIMIT_SIGNUP"], key_func=lambda: f"signup:{client_ip()}",
                           scope="signup"):
            _forbid_admin_flag(data)


class UserDetail(Guarded, ClientDocuments, ResourceDetail):
    """The account itself or, for an admin, any account."""

    schema = UserSchema
    methods = ["GET", "PATCH", "DELETE"]
    required_scopes = {"GET": "users:read", "PATCH": "users:write", "DELETE": "users:write"}
    patch_schema_kwargs = {"partial": True}
    data_layer = _layer()

    def before_patch(self, args, kwargs, data=None):
        _forbid_admin_flag(data)


api.route(UserList, "user_list", "/users")
api.route(UserDetail, "user_detail", "/users/<int:id>")


class UserApiKeysRelationship(Guarded, ResourceRelationship):
    """A user's keys as resource linkage; keys are created and deleted through /v1/api-keys."""

    schema = UserSchema
    methods = ["GET", "POST", "PATCH", "DELETE"]
    required_scopes = {"GET": "keys:read", "POST": "keys:write", "PATCH": "keys:write", "DELETE": "keys:write"}
    data_layer = _layer()

    def _refuse(self, kwargs):
        get_visible_user(kwargs["id"], current_actor())
        raise ApiError(403, "Forbidden", "Keys cannot change owner; use /v1/api-keys to create or delete them.",
                       code="OWNER_IMMUTABLE", pointer="/data")

    def before_post(self, args, kwargs, json_data=None):
        self._refuse(kwargs)

    def before_patch(self, args, kwargs, json_data=None):
        self._refuse(kwargs)

    def before_delete(self, args, kwargs, json_data=None):
        self._refuse(kwargs)

    def after_get(self, result):
        return relationship_document(result)


api.route(UserApiKeysRelationship, "user_api_keys_relationship", "/users/<int:id>/relationships/api-keys")
