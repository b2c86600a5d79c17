"""Building JSON:API documents outside the resource classes (actions, relationships)."""
from app.api.helpers.errors import ApiError
from app.api.helpers.jsonapi import respond


def document(schema_cls, obj, status=200):
    """Return a response with `obj` dumped by `schema_cls` as a JSON:API document."""
    return respond(schema_cls().dump(obj), status, {"Cache-Control": "no-store"} if status == 201 else None)


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
