"""GET /v1/openapi.json: the OpenAPI 3.1 description of /v1 and of the plain JSON routes beside it
(OUTSIDE_V1: the JWKS and the health probes), generated from the app that serves it.

Nothing here restates a resource. Paths, path parameters and methods come from the URL map. For a
route served by a resource class, the JSON:API documents come from its marshmallow-jsonapi schema
(type, attributes with their dump-only, load-only, required and nullable flags and validators,
relationships: components.py, fields.py), the query parameters from the same schema and its data
layer (parameters.py), the security from its `required_scopes` and `anonymous_methods`. The plain
views (auth, key actions, verification, usage, scopes) build their documents by hand, so they are
described by hand (views.py). tests/test_schemathesis.py holds every operation to what the server
answers.

A rule that is Python code (a validator function, the filter grammar, a time window) cannot be
said in JSON Schema: the attribute or parameter carries `x-checked-by-server: true`, and the server
answers 422 (an attribute) or 400 (a parameter) naming it.
"""
import http
import re

import orjson
from flask import current_app, make_response
from flask_rest_jsonapi_next import ResourceDetail, ResourceList, ResourceRelationship

from app.api import bp
from app.api.helpers.values import MAX_ID
from app.api.openapi import views
from app.api.openapi.components import MEDIA_TYPE, Components, ref
from app.api.openapi.fields import NO_NUL
from app.api.openapi.parameters import read_parameters

EXTENSION = "latchkey_openapi"  # the document's JSON, in app.extensions
AUTOMATIC = frozenset({"HEAD", "OPTIONS"})  # Flask answers these for every route: not operations of ours
# Blueprints outside /v1 whose routes the document describes too (views.py): plain JSON, public.
# Not the LLM gateway (/llm/v1), which speaks OpenAI's API and is described by OpenAI's own API
# reference, nor the pages for people (/docs/, /console/).
OUTSIDE_V1 = ("jwks", "health")
_PARAMETER = re.compile(r"<(?:([a-zA-Z_][a-zA-Z0-9_]*)(?:\([^)]*\))?:)?([a-zA-Z_][a-zA-Z0-9_]*)>")


@bp.get("/openapi.json")
def openapi_document():
    """Return the OpenAPI document (public: it names no secret), built once per app."""
    if EXTENSION not in current_app.extensions:
        current_app.extensions[EXTENSION] = orjson.dumps(build_document(current_app))
    response = make_response(current_app.extensions[EXTENSION])
    response.headers["Content-Type"] = MEDIA_TYPE
    return response


def build_document(app) -> dict:
    """Return the OpenAPI 3.1 document of every route of the `v1` blueprint of `app`, and of the
    blueprints in OUTSIDE_V1."""
    components = Components(app)
    paths: dict = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule):
        blueprint = rule.endpoint.partition(".")[0]
        if blueprint != bp.name and blueprint not in OUTSIDE_V1:
            continue
        path, parameters = _path_of(rule)
        view = app.view_functions[rule.endpoint]
        resource = getattr(view, "view_class", None)
        for method in sorted(rule.methods - AUTOMATIC):
            if resource is not None:
                operation = _resource_operation(components, resource, rule, method)
            else:
                operation = views.operation(components, app, view, rule.endpoint)
            paths.setdefault(path, {})[method.lower()] = _finish(operation, path, method, parameters,
                                                                 json_api=blueprint == bp.name)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Latchkey", "version": bp.url_prefix.strip("/"),
                 "description": "API key management: accounts, sessions, API keys and their verification."},
        "paths": paths,
        "components": components.as_dict(),
    }


def _path_of(rule):
    """Return the OpenAPI path of a werkzeug rule and its path parameters, typed by their converters."""
    parameters = []
    for converter_name, name in _PARAMETER.findall(rule.rule):
        converter = rule._converters[name]
        if hasattr(converter, "items"):  # any(...)
            schema = {"type": "string", "enum": sorted(converter.items)}
        elif converter_name == "int":
            # Ids beyond the id columns' range name no row: 404 (check_path_ids), like any missing id.
            schema = {"type": "integer", "minimum": converter.min or 0, "maximum": converter.max or MAX_ID}
        else:
            schema = {"type": "string", "pattern": NO_NUL}
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    return _PARAMETER.sub(r"{\2}", rule.rule), parameters


def _finish(operation, path, method, path_parameters, json_api=True):
    """Add what every operation has: its id, tag, path parameters and the error answers it can give
    (those every /v1 route can give, for one of `json_api`: its request hooks and rate limits)."""
    slug = re.sub(r"[^a-zA-Z0-9]+", "_", path.removeprefix(bp.url_prefix)).strip("_")
    errors = ({400, 406, 429, 503} if json_api else set()) | operation.pop("errors", set())
    if operation.get("security"):
        errors |= {401, 403}
    if path_parameters:
        errors.add(404)
    if "requestBody" in operation:
        errors |= {413, 415, 422}
    responses = operation.setdefault("responses", {})
    for status in sorted(errors):
        responses.setdefault(str(status), ref("responses", http.HTTPStatus(status).phrase.replace(" ", "")))
    return {
        "operationId": f"{method.lower()}_{slug}",
        "tags": [path.removeprefix(bp.url_prefix).strip("/").split("/")[0]],
        **operation,
        "parameters": path_parameters + operation.get("parameters", []),
    }


# --- operations of the resource classes -------------------------------------------------------------

def _resource_operation(components, resource, rule, method) -> dict:
    """Return the operation of a library resource class for `method` on `rule`."""
    schema = resource.schema
    operation = {
        "summary": f"{_VERBS[_kind(resource), method]} {schema.opts.type_}",
        "description": (resource.__doc__ or "").strip(),
        "security": [] if method in resource.anonymous_methods
        else components.security(resource.required_scopes.get(method)),
        "responses": {},
    }
    operation["errors"] = set() if method == "GET" else {409}  # a state, a duplicate or a concurrent change
    if method in resource.anonymous_methods:
        # A credential that is sent is still read (e.g. is-admin needs an admin's): it may be refused.
        operation["errors"] |= {401, 403}
    if issubclass(resource, ResourceRelationship):
        name = rule.rule.rsplit("/", 1)[-1]
        linkage = components.linkage_document(schema, name)
        if method == "GET":
            operation["responses"]["200"] = components.content(linkage, "The resource linkage.")
        else:
            operation["requestBody"] = components.body(linkage)
            operation["responses"]["200"] = components.content(ref("schemas", "MetaDocument"), "Done.")
            operation["responses"]["204"] = {"description": "Nothing to change."}
        return operation
    if method == "GET":
        many = issubclass(resource, ResourceList)
        operation["parameters"] = read_parameters(resource, components.config, many=many) + views.own_parameters(
            rule.endpoint)
        document = components.collection(schema) if many else components.document(schema)
        operation["responses"]["200"] = components.content(document, "The resource document.")
    elif method == "DELETE":
        operation["responses"]["200"] = components.content(ref("schemas", "MetaDocument"), "Deleted.")
    elif method == "POST" and "<" in rule.rule:
        # A list under a parent's URL (a user's keys) lists only: creating is done on the plain list.
        operation["requestBody"] = components.body(components.request_document(schema, new=True))
        operation["errors"].add(405)
        operation["deprecated"] = True
    else:
        new = method == "POST"
        # The library loads a creation with `post_schema` where a resource has one.
        document = components.request_document(getattr(resource, "post_schema", schema) if new else schema, new=new)
        operation["requestBody"] = components.body(document)
        if "relationships" in document["properties"]["data"]["properties"]:
            operation["errors"].add(404)  # a related resource that does not exist
        answer = getattr(resource, "post_response_schema", schema) if new else schema
        operation["responses"]["201" if new else "200"] = components.content(
            components.document(answer), "Created." if new else "The changed resource.")
    return operation


def _kind(resource):
    for kind in (ResourceRelationship, ResourceList, ResourceDetail):
        if issubclass(resource, kind):
            return kind
    raise TypeError(f"{resource.__name__} is no resource class this generator knows")


_VERBS = {
    (ResourceList, "GET"): "List the", (ResourceList, "POST"): "Create one of the",
    (ResourceDetail, "GET"): "Read one of the", (ResourceDetail, "PATCH"): "Change one of the",
    (ResourceDetail, "DELETE"): "Delete one of the",
    (ResourceRelationship, "GET"): "Read the linkage of", (ResourceRelationship, "POST"): "Add to the linkage of",
    (ResourceRelationship, "PATCH"): "Replace the linkage of",
    (ResourceRelationship, "DELETE"): "Remove from the linkage of",
}
