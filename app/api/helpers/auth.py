"""Who is calling: a JWT session, an API key acting as its owner, or nobody.

The actor is resolved once per request and cached on `g`; the rate limiter's key function and
every resource use the same answer.
"""
from dataclasses import dataclass

from flask import current_app, g, request
from flask_jwt_extended import decode_token

from app.api.helpers.errors import ApiError
from app.api.helpers.requests import check_relationship_document, check_resource_document, check_sort
from app.extensions import db
from app.models import User
from app.models.types import utcnow
from app.services import scopes as scope_rules
from app.services import sessions, usage
from app.services.admission import key_identity
from app.services.key_cache import KeyRecord
from app.services.key_format import looks_like_key
from app.services.verifier import Outcome, check_key

# A key that fails to authenticate answers 401 with its reason as the error code, except an
# address outside the key's allowlist, which is a 403.
_KEY_FAILURES = {
    Outcome.NOT_FOUND: (401, "Unknown API key", "The API key is unknown or malformed."),
    Outcome.REVOKED: (401, "Revoked API key", "The API key has been revoked."),
    Outcome.SUSPENDED: (401, "Suspended API key", "The API key is suspended."),
    Outcome.EXPIRED: (401, "Expired API key", "The API key has expired."),
    Outcome.FORBIDDEN: (403, "Address not allowed", "The API key may not be used from this address."),
}


@dataclass(frozen=True)
class Actor:
    """The user a request acts as: a JWT session, which may do all its user may do, or a key,
    which acts as its owner narrowed to its scopes and restrictions (see helpers/permissions)."""

    user_id: int
    owner_is_admin: bool
    key: KeyRecord | None = None  # the key the request came with; None for a session
    session_id: str | None = None

    @classmethod
    def of_key(cls, record: KeyRecord) -> "Actor":
        return cls(record.user_id, record.owner_is_admin, key=record)

    @property
    def key_id(self) -> int | None:
        return None if self.key is None else self.key.id

    @property
    def in_rotation_grace(self) -> bool:
        """True when the request came with a key's old secret, kept valid by a rotation."""
        return self.key is not None and self.key.grace_until is not None

    def allows(self, scope: str) -> bool:
        """A session may use every scope; a key its own, admin-only ones only while its owner is an admin."""
        return self.key is None or scope_rules.key_allows(self.key.scopes, self.owner_is_admin, scope)

    @property
    def is_admin(self) -> bool:
        return self.owner_is_admin and self.allows("admin:access")

    @property
    def identity(self) -> str:
        """The rate limiter's bucket of this actor's requests."""
        return key_identity(self.key_id) if self.key_id is not None else f"user:{self.user_id}"


def unauthorized(detail, code, title="Unauthorized"):
    return ApiError(401, title, detail, code=code, headers={"WWW-Authenticate": "Bearer"})


def authentication_required() -> ApiError:
    return unauthorized("Authentication required: send a JWT or an API key.", "UNAUTHENTICATED")


class KeyRefused(ApiError):
    """A key that failed authentication: 401 with its reason as the code (403 outside its allowlist)."""

    def __init__(self, outcome: Outcome, record: KeyRecord | None):
        status, title, detail = _KEY_FAILURES[outcome]
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        super().__init__(status, title, detail, code=outcome.value, headers=headers)
        self.key_id = record.id if record is not None else None


def refuse_query_credentials():
    """Refuse any request carrying a key or token in its URL, where logs and proxies keep it."""
    prefix = current_app.config["API_KEY_PREFIX"]
    for name, value in request.args.items(multi=True):
        if name.lower() in ("api_key", "apikey", "key", "access_token", "token") or looks_like_key(value, prefix):
            raise ApiError(400, "Credentials in the query string",
                           "Send API keys and tokens in a header, never in the URL.",
                           code="CREDENTIAL_IN_QUERY", parameter=name)


def _credential():
    """Return (kind, value) from the request's headers; kind is 'key', 'jwt' or None."""
    refuse_query_credentials()
    return credential_from(request.headers.get("X-API-Key"), request.headers.get("Authorization", ""))


def credential_from(api_key_header: str | None, authorization: str):
    """Return (kind, value) from the X-API-Key and Authorization headers; 401 on a malformed one."""
    if api_key_header:
        return "key", api_key_header.strip()
    scheme, _, value = authorization.partition(" ")
    if not scheme:
        return None, None
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        raise unauthorized("Use 'Authorization: Bearer <token or key>'.", "INVALID_AUTHORIZATION")
    return ("key" if looks_like_key(value, current_app.config["API_KEY_PREFIX"]) else "jwt"), value


def decode_session_token(token: str, expected_type: str):
    """Return (claims, user) for a valid, unrevoked token of `expected_type`; raise 401 otherwise."""
    try:
        claims = decode_token(token)
    except Exception:  # every PyJWT / flask-jwt-extended failure is the same 401
        raise unauthorized("The token is invalid or expired.", "INVALID_TOKEN") from None
    if claims.get("type") != expected_type:
        raise unauthorized(f"An {expected_type} token is required.", "WRONG_TOKEN_TYPE")
    user = db.session.get(User, int(claims["sub"])) if str(claims.get("sub", "")).isdigit() else None
    if user is None:
        raise unauthorized("The token's user no longer exists.", "INVALID_TOKEN")
    if not sessions.is_live(claims.get("sid"), user.id):
        raise unauthorized("The session has ended: log in again.", "TOKEN_REVOKED")
    return claims, user


def authenticate(kind: str | None, credential: str | None, remote_addr: str | None, now=None) -> Actor | None:
    """Return the actor of a credential (as credential_from reads it), None for no credential; raise
    401 (403) for a bad one. A key's use is recorded (its last-used time), through either door."""
    if kind == "jwt":
        claims, user = decode_session_token(credential, "access")
        return Actor(user.id, user.is_admin, session_id=claims["sid"])
    if kind == "key":
        outcome, record = check_key(credential, remote_addr, now)
        if outcome is not Outcome.VALID:
            raise KeyRefused(outcome, record)
        usage.buffer().key_used(record.id, now or utcnow())
        return Actor.of_key(record)
    return None


def current_actor():
    """Return the request's Actor, or None when no credential was sent; raise on a bad one."""
    if "actor_resolved" not in g:
        try:
            g.actor, g.auth_error = authenticate(*_credential(), request.remote_addr), None
        except KeyRefused as error:
            g.actor, g.auth_error, g.key_outcome = None, error, (error.key_id, error.code)
        except ApiError as error:
            g.actor, g.auth_error = None, error
        g.actor_resolved = True  # only now: an unexpected error (a database down) is raised again, not hidden
    if g.auth_error is not None:
        raise g.auth_error
    return g.actor


def check_scope(actor: Actor, scope: str):
    """403 INSUFFICIENT_SCOPES when the actor (a key) may not use `scope`."""
    if not actor.allows(scope):
        detail = f"The API key lacks the scope '{scope}'."
        if scope_rules.is_admin_only(scope):
            detail += " Admin-only scopes work only while the key's owner is an administrator."
        raise ApiError(403, "Insufficient scope", detail, code="INSUFFICIENT_SCOPES")


def require(scope: str | None = None) -> Actor:
    """Return the authenticated actor; 401 without one, 403 if a key lacks `scope`."""
    actor = current_actor()
    if actor is None:
        raise authentication_required()
    if scope and not actor.allows(scope):
        g.key_outcome = (actor.key_id, "INSUFFICIENT_SCOPES")
        check_scope(actor, scope)
    return actor


def require_admin(scope: str | None = None) -> Actor:
    """Return the actor if it may use admin rights; 403 otherwise."""
    actor = require(scope)
    if not actor.is_admin:
        raise ApiError(403, "Forbidden", "Only an administrator may do this.", code="ADMIN_REQUIRED")
    return actor


# The scope that reading a resource type needs, directly or through `include`.
READ_SCOPES = {"users": "users:read", "api-keys": "keys:read"}


class Guarded:
    """Mixin for resources: authenticate, and check the scope the HTTP method needs, and the read
    scope of every type it is asked to `include`.

    `required_scopes` maps a method to its scope; methods in `anonymous_methods` skip the check.
    """

    required_scopes: dict = {}
    anonymous_methods: tuple = ()

    def dispatch_request(self, *args, **kwargs):
        if request.method not in self.anonymous_methods:
            require(self.required_scopes.get(request.method))
            for name in filter(None, request.args.get("include", "").split(",")):
                relationship = self.schema._declared_fields.get(name.split(".")[0].replace("-", "_"))
                if getattr(relationship, "type_", None) in READ_SCOPES:  # unknown names: the library's 400
                    require(READ_SCOPES[relationship.type_])
        if request.method == "GET" and "sort" in request.args:
            check_sort(self.schema, getattr(self._data_layer, "model", None), request.args["sort"])
        if request.method in ("POST", "PATCH", "DELETE") and self._is_relationship():
            check_relationship_document(request.get_json(silent=True))
        elif request.method in ("POST", "PATCH"):
            check_resource_document(request.get_json(silent=True), self.schema.opts.type_)
        return super().dispatch_request(*args, **kwargs)

    def _is_relationship(self):
        return request.path.rsplit("/", 2)[-2] == "relationships"
