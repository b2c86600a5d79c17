"""The `users` resource: the password is load-only and only its hash is kept."""
from flask import current_app
from marshmallow import ValidationError, validate
from marshmallow_jsonapi import fields

from app.api.schema import Relationship, Schema, dasherize
from app.models import User


def _password_policy(value: str):
    minimum = current_app.config["PASSWORD_MIN_LENGTH"]
    if len(value) < minimum:
        raise ValidationError(f"The password must be at least {minimum} characters long.")
    if len(value) > 1024:
        raise ValidationError("The password must be at most 1024 characters long.")


class UserSchema(Schema):
    class Meta:
        type_ = "users"
        self_view = "v1.user_detail"
        self_view_kwargs = {"id": "<id>"}
        self_view_many = "v1.user_list"
        inflect = dasherize
        model = User  # lets the library eager-load `include`d relationships

    # Loadable because PATCH documents carry it; a POST with an id is refused (no client ids).
    id = fields.Str()
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = fields.Str(load_only=True, required=True, validate=_password_policy)
    # Proof for changing one's own password or email; checked, never stored.
    current_password = fields.Str(load_only=True, validate=validate.Length(max=1024))
    is_admin = fields.Bool()
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)
    api_keys = Relationship(
        self_view="v1.user_api_keys_relationship",
        self_view_kwargs={"id": "<id>"},
        related_view="v1.api_key_list",
        related_view_kwargs={"id": "<id>"},
        many=True,
        type_="api-keys",
        schema="ApiKeySchema",
        dump_only=True,
    )
