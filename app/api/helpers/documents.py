"""Building JSON:API documents outside the resource classes (actions, relationships)."""
from flask import json, make_response

from app.api.helpers.errors import JSONAPI, ApiError


def document(schema_cls, obj, status=200):
    """Return a response with `obj` dumped by `schema_cls` as a JSON:API document."""
    body = schema_cls().dump(obj)
    body["jsonapi"] = {"version": "1.0"}
    response = make_response(json.dumps(body), status)
    response.headers["Content-Type"] = JSONAPI
    if status == 201:
        response.headers["Cache-Control"] = "no-store"
    return response


def stringify_linkage(result):
    """JSON:API ids are strings; the relationship resources hand out the model's integers."""
    data = result.get("data")
    for item in data if isinstance(data, list) else [data] if data else []:
        item["id"] = str(item["id"])
    return result


def refuse_client_id(data):
    """JSON:API: a server that does not accept client-generated ids answers 403."""
    if "id" in data:
        raise ApiError(403, "Forbidden", "Client-generated ids are not supported.", pointer="/data/id")
