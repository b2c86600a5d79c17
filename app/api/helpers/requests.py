"""Reading requests: bodies of non-resource endpoints, resource documents, query names."""
import json

from flask import request
from werkzeug.datastructures import ImmutableMultiDict

from app.api.helpers.errors import ApiError

JSON_TYPES = ("application/json", "application/vnd.api+json")


def json_body() -> dict:
    """Return the request's attributes: `data.attributes` of a JSON:API document or a plain object.

    Raises 415 for another media type and 400 for a body that is not a JSON object.
    """
    if request.mimetype not in JSON_TYPES:
        raise ApiError(415, "Unsupported media type",
                       "Send application/vnd.api+json or application/json.")
    return attributes_of(request.get_json(silent=True))


def attributes_of(body) -> dict:
    """Return `data.attributes` of a parsed JSON:API document, or the plain object itself."""
    if not isinstance(body, dict):
        raise ApiError(400, "Bad request", "The body must be a JSON object.", pointer="/")
    data = body.get("data")
    if isinstance(data, dict) and isinstance(data.get("attributes"), dict):
        return data["attributes"]
    return body


def optional_json_body() -> dict:
    """Return json_body(), or {} when the request has no body at all."""
    if not request.get_data(cache=True):
        return {}
    return json_body()


def undasherize_query():
    """Let clients name attributes as they see them (`created-at`) in sort, fields and filters.

    The schemas dasherize attribute names on the way out; the library matches query names against
    the Python names, so they are translated here, once, before any resource reads them.
    """
    if not any(k == "sort" or k.startswith(("fields[", "filter")) for k in request.args):
        return
    pairs = []
    for key, value in request.args.items(multi=True):
        if key == "sort":
            value = ",".join(("-" if part.startswith("-") else "") + part.lstrip("-").replace("-", "_")
                             for part in value.split(","))
        elif key.startswith("fields["):
            value = value.replace("-", "_")
        elif key.startswith("filter["):
            key = key.replace("-", "_")
        elif key == "filter":
            value = _undasherize_filter(value)
        pairs.append((key, value))
    request.args = ImmutableMultiDict(pairs)


def _undasherize_filter(text):
    try:
        tree = json.loads(text)
    except ValueError:
        return text  # the library answers 400 for it

    def walk(node):
        if isinstance(node, list):
            return [walk(item) for item in node]
        if isinstance(node, dict):
            return {k: (v.replace("-", "_") if k == "name" and isinstance(v, str) else walk(v))
                    for k, v in node.items()}
        return node

    return json.dumps(walk(tree))


def check_resource_document(body, type_):
    """Refuse a POST/PATCH body that is not a JSON:API resource document, before the schema sees it."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise ApiError(400, "Bad request", "The body must be a JSON:API document with a 'data' object.",
                       pointer="/data")
    data = body["data"]
    if data.get("type") != type_:
        raise ApiError(409, "Conflict", f"data.type must be '{type_}'.", pointer="/data/type")
    for member in ("attributes", "relationships"):
        if member in data and not isinstance(data[member], dict):
            raise ApiError(400, "Bad request", f"data.{member} must be an object.", pointer=f"/data/{member}")
    for name, relationship in data.get("relationships", {}).items():
        linkage = relationship.get("data") if isinstance(relationship, dict) else None
        if not isinstance(linkage, dict) or not str(linkage.get("id", "")).isdigit():
            raise ApiError(422, "Validation error", "A relationship is {'data': {'type': ..., 'id': '<number>'}}.",
                           pointer=f"/data/relationships/{name}")

