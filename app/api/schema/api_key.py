"""The `api-keys` resource. Status, start, last4, timestamps and usage are read-only: a PATCH may
re-send them unchanged, a changed one is a 422 (helpers/documents.py). The secret is only in
`ApiKeyCreatedSchema`."""
import ipaddress
import json
import re

from limits import parse_many
from marshmallow import ValidationError, validate, validates
from marshmallow_jsonapi import fields

from app.api.schema import Relationship, Schema, dasherize, utc_datetime
from app.models import ApiKey
from app.services import key_rules
from app.services.admission import PERIODS
from app.services.allowances import allowance_state

TAG_RE = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,31}")  # used with fullmatch
MAX_TAGS = 20
MAX_ALLOWED_IPS = 50
MAX_METADATA_BYTES = 4096
# What a quota or budget shows besides its limit and period: a client may send them back, unread.
ALLOWANCE_STATE = {"used", "remaining", "resets-at"}


def _rule(check):
    """A marshmallow validator running a shared key rule: its ValueError becomes the field's 422."""
    def validator(value):
        try:
            check(value)
        except ValueError as error:
            raise ValidationError(str(error)) from None
    return validator


def _validate_allowance(value):
    if not isinstance(value, dict) or not {"limit", "period"} <= set(value) <= {"limit", "period"} | ALLOWANCE_STATE:
        raise ValidationError("Give an object with 'limit' and 'period' (used, remaining and resets-at are "
                              "read-only and ignored).")
    limit, period = value["limit"], value["period"]
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 10**12:
        raise ValidationError("'limit' must be a whole number from 1 to 10^12.")
    if period not in PERIODS:
        raise ValidationError(f"'period' must be one of {', '.join(PERIODS)}.")


class ApiKeySchema(Schema):
    class Meta:
        type_ = "api-keys"
        self_view = "v1.api_key_detail"
        self_view_kwargs = {"id": "<id>"}
        self_view_many = "v1.api_key_list"
        inflect = dasherize
        model = ApiKey  # lets the library eager-load `include`d relationships

    # Loadable because PATCH documents carry it; a POST with an id is refused (no client ids).
    id = fields.Str()
    name = fields.Str(required=True, validate=_rule(key_rules.key_name))
    description = fields.Str(allow_none=True, validate=validate.Length(max=1000))
    scopes = fields.List(fields.Str(), load_default=list, validate=_rule(key_rules.key_scopes))
    status = fields.Method("get_status", dump_only=True)
    start = fields.Str(dump_only=True)
    last4 = fields.Str(dump_only=True)
    expires_at = utc_datetime(allow_none=True)
    revoked_at = utc_datetime(allow_none=True)
    suspended_at = fields.DateTime(dump_only=True)
    last_used_at = fields.DateTime(dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)
    allowed_ips = fields.List(fields.Str())  # unset on a key's creation: inherited from a calling key
    metadata = fields.Dict(attribute="key_metadata", data_key="metadata", load_default=dict)
    tags = fields.List(fields.Str(), load_default=list)
    rate_limit = fields.Str(allow_none=True, validate=validate.Length(max=200))
    quota = fields.Method("get_quota", deserialize="load_allowance", allow_none=True)
    budget = fields.Method("get_budget", deserialize="load_allowance", allow_none=True)
    rotation_grace_until = fields.DateTime(attribute="previous_valid_until", dump_only=True)
    user = Relationship(
        self_view="v1.api_key_user_relationship",
        self_view_kwargs={"id": "<id>"},
        related_view="v1.user_detail",
        related_view_kwargs={"id": "<user_id>"},
        include_resource_linkage=True,
        schema="UserSchema",
        type_="users",
    )

    def get_status(self, key):
        return key.effective_status()

    def get_quota(self, key):
        return allowance_state(key, "quota")

    def get_budget(self, key):
        return allowance_state(key, "budget")

    def load_allowance(self, value):
        if value is None:
            return None
        _validate_allowance(value)
        return {"limit": value["limit"], "period": value["period"]}

    @validates("allowed_ips")
    def _allowed_ips(self, value, **kwargs):
        if len(value) > MAX_ALLOWED_IPS:
            raise ValidationError(f"At most {MAX_ALLOWED_IPS} addresses or networks.")
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValidationError(f"{cidr!r} is not an IPv4/IPv6 address or CIDR network.") from None

    @validates("metadata")
    def _metadata(self, value, **kwargs):
        if len(json.dumps(value, separators=(",", ":"))) > MAX_METADATA_BYTES:
            raise ValidationError(f"Metadata must serialize to at most {MAX_METADATA_BYTES} bytes.")

    @validates("tags")
    def _tags(self, value, **kwargs):
        if len(value) > MAX_TAGS:
            raise ValidationError(f"At most {MAX_TAGS} tags.")
        bad = [tag for tag in value if not TAG_RE.fullmatch(tag)]
        if bad:
            raise ValidationError(f"Invalid tag {bad[0]!r}: 1-32 of a-z 0-9 _ . : -")

    @validates("rate_limit")
    def _rate_limit(self, value, **kwargs):
        if value is None:
            return
        try:
            parse_many(value)
        except ValueError:
            raise ValidationError("Use flask-limiter notation, e.g. '100/minute;10000/day'.") from None


class ApiKeyCreatedSchema(ApiKeySchema):
    """The one response that carries the secret: the 201 of a creation or a rotation."""

    class Meta:
        type_ = "api-keys"
        self_view = "v1.api_key_detail"
        self_view_kwargs = {"id": "<id>"}
        inflect = dasherize
        model = ApiKey  # lets the library eager-load `include`d relationships

    secret = fields.Str(attribute="plaintext_secret", dump_only=True)
