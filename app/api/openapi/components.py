"""The `components` of the OpenAPI document: JSON:API envelopes around the marshmallow-jsonapi
schemas, the error answers, and the security schemes.

A schema class becomes a resource object (what the server writes: every attribute that is not
load-only, each may be null, since marshmallow writes null for a missing value) and request
documents (what it reads: attributes that are not dump-only, `required` for a creation, null only
where the field allows it; a change may also send a read-only attribute back unchanged, see
helpers/documents.settle_members). Attribute names are the schema's `inflect`ed ones, as on the wire.
"""
import http

from app.api.openapi.fields import CHECKED, attributes_of, field_schema, relationships_of, validated_names, wire_name

JSONAPI = "application/vnd.api+json"
MEDIA_TYPE = "application/vnd.oai.openapi+json"
ERRORS = (400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 429, 503)
ERROR_HEADERS = {401: "WWW-Authenticate", 405: "Allow", 429: "Retry-After", 503: "Retry-After"}


def ref(section, name):
    return {"$ref": f"#/components/{section}/{name}"}


def _component_name(schema_cls):
    return schema_cls.__name__.removesuffix("Schema")


def identifier(type_, *, reading):
    """A resource identifier object; the server reads numeric ids only (check_resource_document)."""
    id_schema = {"type": "string", "pattern": "^[0-9]+$"} if reading else {"type": "string"}
    return {"type": "object", "required": ["type", "id"],
            "properties": {"type": {"const": type_}, "id": id_schema}}


class Components:
    """The components one document refers to, registered as the operations are built."""

    def __init__(self, app):
        self.config = app.config
        self.schemas = {
            "JsonApi": {"type": "object", "properties": {"version": {"type": "string"}}},
            # Every link is absolute, built from the request (app/api/schema/__init__.py).
            "Links": {"type": "object", "additionalProperties": {"type": ["string", "null"], "format": "uri"}},
            "Error": {"type": "object", "required": ["status", "title"], "properties": {
                "status": {"type": "string", "pattern": "^[45][0-9]{2}$"}, "title": {"type": "string"},
                "detail": {"type": "string"}, "code": {"type": "string"},
                "source": {"type": "object", "properties": {"pointer": {"type": "string"},
                                                            "parameter": {"type": "string"}}}}},
            "ErrorDocument": {"type": "object", "required": ["errors"], "properties": {
                "errors": {"type": "array", "minItems": 1, "items": ref("schemas", "Error")},
                "jsonapi": ref("schemas", "JsonApi")}},
            "MetaDocument": {"type": "object", "required": ["meta"], "properties": {
                "meta": {"type": "object"}, "jsonapi": ref("schemas", "JsonApi")}},
        }

    def as_dict(self):
        return {"schemas": self.schemas, "responses": self._error_responses(), "securitySchemes": SECURITY_SCHEMES}

    # --- requests and answers ---

    @staticmethod
    def content(schema, description):
        return {"description": description, "content": {JSONAPI: {"schema": schema}}}

    @staticmethod
    def body(schema, required=True):
        """A request body: JSON:API's media type, or plain JSON (the server reads both)."""
        return {"required": required, "content": {JSONAPI: {"schema": schema}, "application/json": {"schema": schema}}}

    @staticmethod
    def security(scope=None):
        """Any credential: a session may use every scope, a key only those it was given."""
        scopes = [scope] if scope else []
        return [{"session": []}, {"apiKey": scopes}, {"apiKeyBearer": scopes}]

    # --- resources ---

    def resource(self, schema_cls):
        """Register the resource object of `schema_cls` (and of its relationships'); return its $ref."""
        name = _component_name(schema_cls)
        if name in self.schemas:
            return ref("schemas", name)
        self.schemas[name] = {}  # a placeholder while relationships refer back to it
        type_ = schema_cls.opts.type_
        attributes = {wire_name(schema_cls, n, f): field_schema(f, loading=False)
                      for n, f in attributes_of(schema_cls).items() if not f.load_only}
        relationships = {}
        for n, field in relationships_of(schema_cls).items():
            linkage = {"type": "array", "items": identifier(field.type_, reading=False)} if field.many \
                else {"anyOf": [identifier(field.type_, reading=False), {"type": "null"}]}
            relationships[wire_name(schema_cls, n, field)] = {
                "type": "object", "additionalProperties": False,
                "properties": {"links": ref("schemas", "Links"), "data": linkage}}
            self.resource(type(field.schema))
        self.schemas[name] = {
            "type": "object", "required": ["type", "id"], "additionalProperties": False,
            "description": (schema_cls.__doc__ or "").strip() or f"One of the `{type_}`.",
            "properties": {
                "type": {"const": type_}, "id": {"type": "string"},
                "attributes": {"type": "object", "additionalProperties": False, "properties": attributes},
                "relationships": {"type": "object", "additionalProperties": False, "properties": relationships},
                "links": ref("schemas", "Links"),
            },
        }
        return ref("schemas", name)

    def document(self, schema_cls):
        return self._document(schema_cls, self.resource(schema_cls), {})

    def collection(self, schema_cls):
        meta = {"type": "object", "properties": {"count": {"type": "integer", "minimum": 0}}}
        return self._document(schema_cls, {"type": "array", "items": self.resource(schema_cls)}, {"meta": meta})

    def _document(self, schema_cls, data, extra):
        related = [self.resource(type(field.schema)) for field in relationships_of(schema_cls).values()]
        properties = {"data": data, "links": ref("schemas", "Links"), "jsonapi": ref("schemas", "JsonApi"), **extra}
        if related:
            properties["included"] = {"type": "array", "items": {"anyOf": related}}
        return {"type": "object", "required": ["data"], "properties": properties}

    def request_document(self, schema_cls, *, new):
        """The document a creation (`new`) or a change sends: no client ids; a change names its id."""
        checked = validated_names(schema_cls)
        loadable = {n: f for n, f in attributes_of(schema_cls).items() if not f.dump_only}
        attributes = {"type": "object", "additionalProperties": False, "properties": {
            wire_name(schema_cls, n, f): field_schema(f, loading=True, validated=n in checked)
            for n, f in loadable.items()}}
        required = [wire_name(schema_cls, n, f) for n, f in loadable.items() if f.required] if new else []
        if not new:  # a change may send back what it read: a read-only attribute, if unchanged
            attributes["properties"].update({
                wire_name(schema_cls, n, f): {**field_schema(f, loading=False), "readOnly": True, CHECKED: True}
                for n, f in attributes_of(schema_cls).items() if f.dump_only})
        if required:
            attributes["required"] = required
        relationships = {
            wire_name(schema_cls, n, f): {"type": "object", "required": ["data"], "properties": {
                "data": {"type": "array", "items": identifier(f.type_, reading=True)} if f.many
                else identifier(f.type_, reading=True)}}
            for n, f in relationships_of(schema_cls).items() if not f.dump_only}
        data = {"type": "object", "required": ["type", *(["attributes"] if required else []), *([] if new else ["id"])],
                "properties": {"type": {"const": schema_cls.opts.type_}, "attributes": attributes}}
        if not new:
            data["properties"]["id"] = {"type": "string", "pattern": "^[0-9]+$",
                                        "description": "The id in the URL."}
        if relationships:
            data["properties"]["relationships"] = {"type": "object", "additionalProperties": False,
                                                   "properties": relationships}
        return {"type": "object", "required": ["data"], "properties": {"data": data}}

    def linkage_document(self, schema_cls, name):
        """The document of a relationship route: the linkage of the relationship `name`d in the URL."""
        field = next(f for n, f in relationships_of(schema_cls).items() if wire_name(schema_cls, n, f) == name)
        self.resource(type(field.schema))
        linkage = {"type": "array", "items": identifier(field.type_, reading=True)} if field.many \
            else {"anyOf": [identifier(field.type_, reading=True), {"type": "null"}]}
        return {"type": "object", "required": ["data"], "properties": {
            "data": linkage, "links": ref("schemas", "Links"), "jsonapi": ref("schemas", "JsonApi")}}

    def _error_responses(self):
        responses = {}
        for status in ERRORS:
            phrase = http.HTTPStatus(status).phrase
            answer = self.content(ref("schemas", "ErrorDocument"), phrase)
            if status in ERROR_HEADERS:
                answer["headers"] = {ERROR_HEADERS[status]: {"schema": {"type": "string"}}}
            responses[phrase.replace(" ", "")] = answer
        return responses


SECURITY_SCHEMES = {
    "session": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "An access token from POST /v1/auth/login: 'Authorization: Bearer <token>'. "
                               "A session may use every scope."},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
               "description": "An API key; it acts as its owner, narrowed to the key's scopes (listed per operation)."},
    "apiKeyBearer": {"type": "http", "scheme": "bearer", "bearerFormat": "API key",
                     "description": "An API key in 'Authorization: Bearer <key>', told from a JWT by its prefix."},
    "refreshToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                     "description": "A refresh token from POST /v1/auth/login: 'Authorization: Bearer <token>'."},
}
