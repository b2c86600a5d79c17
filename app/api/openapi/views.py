"""The plain views: the routes of /v1 without a resource class (auth, key actions, verification,
usage, scopes, this document) and the plain JSON ones outside /v1 the document describes too (the
JWKS, the health probes). Each builds its documents by hand, so each is described here by
hand, one function per endpoint; the summary comes from the view's docstring, the resource types
and limits from the code that enforces them, and tests/test_schemathesis.py holds every answer to
what the view sends. A view without a description here fails the document's build (and its test).
"""
from app.api import api_keys, jwks, usage, verify
from app.api.openapi.components import JSONAPI, MEDIA_TYPE, ref
from app.api.openapi.fields import CHECKED, NO_NUL
from app.api.openapi.parameters import query
from app.api.schema.api_key import ApiKeyCreatedSchema, ApiKeySchema
from app.services import scopes as scope_rules
from app.services.verifier import Outcome

DESCRIBED = {}
# JSON Schema takes 1.0 for an integer; the server reads whole numbers only as JSON integers (1).
WHOLE = {CHECKED: True, "description": "A whole number, written without a fraction."}
SCOPE = {"type": "string", "maxLength": 200,
         "pattern": f"^(?:{scope_rules.SEGMENT_RE.pattern})(?::(?:{scope_rules.SEGMENT_RE.pattern}))+$"}
TEXT = {"type": "string", "pattern": NO_NUL}


def operation(components, app, view, endpoint) -> dict:
    """Return the operation of the plain view `view` routed as `endpoint`."""
    summary, _, description = (view.__doc__ or "").strip().partition("\n")
    described = DESCRIBED[endpoint](components, app)
    summary = summary or endpoint.partition(".")[2].replace("_", " ").capitalize()  # e.g. "Suspend key"
    return {"summary": summary, "description": description.strip(), **described}


def own_parameters(endpoint) -> list:
    """Query parameters a resource's list reads itself, beside those of the library."""
    if endpoint != "v1.api_key_list":
        return []
    return [query("filter[status]", {"enum": list(api_keys.STATUSES)}, "Only keys in this status."),
            query("filter[tag]", TEXT, "Only keys with this tag.")]


def describes(endpoint):
    def register(function):
        DESCRIBED[endpoint] = function
        return function
    return register


def _object(properties, required=()):
    schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def _meta_document(meta):
    return _object({"meta": meta, "jsonapi": ref("schemas", "JsonApi")}, ["meta"])


def _data_document(data, **members):
    return _object({"data": data, "jsonapi": ref("schemas", "JsonApi"), **members}, ["data"])


def _resource(attributes, required=()):
    """A resource object of a type the view names itself."""
    return _object({"type": {"type": "string"}, "id": {"type": "string"},
                    "attributes": _object(attributes, required)}, ["type", "id", "attributes"])


def _attributes_body(components, attributes, required=(), body_required=True):
    """A body read by `json_body`: the attributes in a JSON:API document, or as a plain object
    (one without `data`, which would be read as a document)."""
    document = _object({"data": _object({"attributes": _object(attributes, required)}, ["attributes"])}, ["data"])
    plain = _object({**attributes, "data": False}, required)
    return components.body({"anyOf": [document, plain]}, required=body_required)


def _no_content(description):
    return {"204": {"description": description}}


# --- sessions ---------------------------------------------------------------------------------------

def _tokens(with_refresh):
    token = {"type": "string"}
    meta = {"access_token": token, "token_type": {"const": "Bearer"}, "expires_in": {"type": "integer"},
            "user_id": {"type": "string"}}
    if with_refresh:
        meta["refresh_token"] = token
    return {"200": {"description": "A session's tokens.", "headers": {"Cache-Control": {"schema": TEXT}},
                    "content": {JSONAPI: {"schema": _meta_document(_object(meta, list(meta)))}}}}


@describes("v1.login")
def _login(components, app):
    credentials = {"email": {**TEXT, "maxLength": 254}, "password": {"type": "string"}}
    return {"security": [], "requestBody": _attributes_body(components, credentials, ["email", "password"]),
            "responses": _tokens(with_refresh=True), "errors": {401}}


@describes("v1.refresh")
def _refresh(components, app):
    return {"security": [{"refreshToken": []}], "responses": _tokens(with_refresh=False)}


@describes("v1.logout")
def _logout(components, app):
    return {"security": [{"session": []}], "responses": _no_content("The session has ended.")}


@describes("v1.logout_all")
def _logout_all(components, app):
    return {"security": [{"session": []}], "responses": _no_content("Every session of the account has ended.")}


# --- key actions ------------------------------------------------------------------------------------

def _key_action(components, security, schema=ApiKeySchema, status="200"):
    return {"security": security, "errors": {409},
            "responses": {status: components.content(components.document(schema), "The key, changed.")}}


@describes("v1.revoke_key")
def _revoke(components, app):
    return _key_action(components, components.security("keys:write"))


@describes("v1.suspend_key")
def _suspend(components, app):
    return _key_action(components, components.security("keys:write"))


@describes("v1.reactivate_key")
def _reactivate(components, app):
    return _key_action(components, [{"session": []}])


@describes("v1.reset_allowance")
def _reset(components, app):
    return _key_action(components, [{"session": []}])


@describes("v1.rotate_key")
def _rotate(components, app):
    grace = {**WHOLE, "type": "integer", "minimum": 0, "maximum": app.config["API_KEY_MAX_GRACE_SECONDS"],
             "description": "Seconds during which the old secret stays valid, written without a fraction."}
    return {**_key_action(components, components.security("keys:write"), ApiKeyCreatedSchema, "201"),
            "requestBody": _attributes_body(components, {"grace-period": grace}, body_required=False)}


# --- verification -----------------------------------------------------------------------------------

@describes("v1.verify_key")
def _verify(components, app):
    attributes = {
        "key": {"type": "string", "minLength": 1, "maxLength": 256, "description": "The API key to check."},
        "scopes": {"type": "array", "items": SCOPE, "description": "Scopes the key must cover."},
        "ip": {"anyOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}, {"type": "null"}],
               "description": "The end client's address, for the key's allowlist (null: not checked)."},
        "cost": {**WHOLE, "type": "integer", "minimum": 0, "maximum": verify.MAX_COST},
        "token": {"type": "boolean", "description": "Ask for meta.token: the valid answer signed (EdDSA), to "
                                                    "check offline against /.well-known/jwks.json."},
        "reserve": {"type": "boolean", "description": "Reserve `cost` as an estimate: a valid answer carries "
                                                      "meta.reservation, to settle or release later."},
    }
    allowance = {"type": ["object", "null"]}
    key = _object({"id": {"type": "string"}, "owner-id": {"type": "string"}, "name": {"type": "string"},
                   "scopes": {"type": "array", "items": {"type": "string"}}, "metadata": {"type": "object"},
                   "cost": {"type": "integer"}, "expires-at": {"type": ["string", "null"], "format": "date-time"},
                   "rotation-grace-until": {"type": "string", "format": "date-time"}})
    meta = _object({"valid": {"type": "boolean"}, "code": {"enum": [outcome.value for outcome in Outcome]},
                    "missing-scopes": {"type": "array", "items": {"type": "string"}},
                    "rate-limit": allowance, "quota": allowance, "budget": allowance, "key": key,
                    "token": {"type": "string", "description": "A JWT of a valid answer, when asked for."},
                    "reservation": _object({"id": {"type": "string"}, "estimate": {"type": "integer"},
                                            "expires-at": {"type": "string", "format": "date-time"}})},
                   ["valid", "code"])
    return {"security": components.security("keys:verify"),
            "requestBody": _attributes_body(components, attributes, ["key"]),
            "responses": {"200": components.content(_meta_document(meta), "The verdict on the key.")}}


# --- reservations -----------------------------------------------------------------------------------

def _finished_reservation(components, body=None):
    reservation = _object({"id": {"type": "string"}, "state": {"enum": ["settled", "released"]},
                           "estimate": {"type": "integer"}, "cost": {"type": "integer"}})
    described = {"security": components.security("keys:verify"), "errors": {404, 409},
                 "responses": {"200": components.content(_meta_document(_object({"reservation": reservation})),
                                                         "The reservation, finished.")}}
    return {**described, "requestBody": body} if body else described


@describes("v1.settle_reservation")
def _settle(components, app):
    cost = {**WHOLE, "type": "integer", "minimum": 0, "maximum": verify.MAX_COST}
    return _finished_reservation(components, _attributes_body(components, {"cost": cost}, ["cost"]))


@describes("v1.release_reservation")
def _release(components, app):
    return _finished_reservation(components)


# --- usage, scopes, this document -------------------------------------------------------------------

def _window_parameters():
    """The window of the usage views, by their names and the deprecated old ones (usage.RENAMED)."""
    time = {"type": "string", "format": "date-time", CHECKED: True}
    schemas = {"filter[from]": (time, "Start of the window (default: a span before its end)."),
               "filter[to]": (time, "End of the window (default: now)."),
               "group-by": ({"enum": sorted(usage.MAX_RANGE)}, "The series' step, which bounds the window.")}
    parameters = [query(name, *schemas[name]) for name in usage.RENAMED]
    return parameters + [{**query(old, {**schemas[new][0], CHECKED: True}), "deprecated": True,
                          "description": f"Use {new} (and never both)."} for new, old in usage.RENAMED.items()]


def _by_model():
    """The LLM gateway's calls by model: requests, cost, input and output tokens."""
    totals = _object({name: {"type": "integer"} for name in ("requests", "cost", "input-tokens", "output-tokens")},
                     ["requests", "cost", "input-tokens", "output-tokens"])
    return {"type": "object", "additionalProperties": totals}


@describes("v1.key_usage")
def _key_usage(components, app):
    counts = {"type": "object", "additionalProperties": {"type": "integer"}}
    point = _object({"time": {"type": "string", "format": "date-time"}, "total": {"type": "integer"},
                     "cost": {"type": "integer"}, "outcomes": counts, "models": _by_model()},
                    ["time", "total", "cost", "outcomes", "models"])
    attributes = {"from": {"type": "string", "format": "date-time"}, "to": {"type": "string", "format": "date-time"},
                  "granularity": {"enum": sorted(usage.MAX_RANGE)}, "totals": counts,
                  "series": {"type": "array", "items": point}}
    return {"security": components.security("usage:read"), "parameters": _window_parameters(),
            "responses": {"200": components.content(_data_document(_resource(attributes, list(attributes))),
                                                    "The key's usage in the window.")}}


@describes("v1.usage_summary")
def _usage_summary(components, app):
    count = {"type": "integer", "minimum": 0}
    busiest = _object({"id": {"type": "string"}, "name": {"type": "string"}, "total": count}, ["id", "name", "total"])
    attributes = {"from": {"type": "string", "format": "date-time"}, "to": {"type": "string", "format": "date-time"},
                  "total": count, "cost": count, "errors": count, "rate-limited": count,
                  "by-outcome": {"type": "object", "additionalProperties": count},
                  "busiest-keys": {"type": "array", "items": busiest}, "by-model": _by_model()}
    return {"security": components.security("usage:read"), "parameters": _window_parameters(),
            "responses": {"200": components.content(_data_document(_resource(attributes, list(attributes))),
                                                    "The caller's usage in the window.")}}


@describes("v1.list_scopes")
def _scopes(components, app):
    scope = _resource({"description": {"type": "string"}, "admin-only": {"type": "boolean"}},
                      ["description", "admin-only"])
    document = _data_document({"type": "array", "items": scope}, meta=_object({"wildcards": {"type": "string"}}))
    described = ("Every built-in scope, then, to a signed-in caller, the LLM gateway's (llm:<provider>:* and one "
                 "per model).")
    return {"security": [], "responses": {"200": components.content(document, described)}}


@describes("v1.openapi_document")
def _openapi(components, app):
    return {"security": [], "responses": {"200": {"description": "This document.",
                                                  "content": {MEDIA_TYPE: {"schema": {"type": "object"}}}}}}


# --- outside /v1: plain JSON, public ----------------------------------------------------------------

def _plain_json(schema, description, **extra):
    return {"description": description, "content": {"application/json": {"schema": schema}}, **extra}


@describes("jwks.jwks")
def _jwks(components, app):
    key = _object({"kty": {"const": "OKP"}, "crv": {"const": "Ed25519"},
                   "x": {"type": "string", "description": "The public key, base64url without padding."},
                   "kid": {"type": "string"}, "use": {"const": "sig"}, "alg": {"const": "EdDSA"}},
                  ["kty", "crv", "x", "kid", "use", "alg"])
    cache = {"Cache-Control": {"schema": {"const": f"public, max-age={jwks.CACHE_SECONDS}"}}}
    document = _object({"keys": {"type": "array", "items": key}}, ["keys"])
    # Rate limited like /v1 (429), and read from the database (503): those errors are JSON:API documents.
    return {"security": [], "tags": ["jwks"], "errors": {429, 503},
            "responses": {"200": _plain_json(document, "The JWKS (RFC 7517): every key that may have signed a "
                                                       "token still valid, newest first.", headers=cache)}}


@describes("health.healthz")
def _healthz(components, app):
    return {"security": [], "tags": ["health"],
            "responses": {"200": _plain_json(_object({"status": {"const": "ok"}}, ["status"]),
                                             "The process serves requests.")}}


@describes("health.readyz")
def _readyz(components, app):
    checks = _object({"database": {"type": "boolean"}, "rate_limit_storage": {"type": "boolean"}},
                     ["database", "rate_limit_storage"])

    def answer(status):
        return _object({"status": {"const": status}, "checks": checks}, ["status", "checks"])

    return {"security": [], "tags": ["health"],
            "responses": {"200": _plain_json(answer("ready"), "The database and the rate limit storage answer."),
                          "503": _plain_json(answer("unavailable"), "A check failed: it is false.")}}
