"""Reading the body of non-resource endpoints (login, actions, verification)."""
from flask import request

from app.api.helpers.errors import ApiError


def json_body() -> dict:
    """Return the request's attributes: `data.attributes` of a JSON:API document or a plain object.

    Raises 415 for another media type and 400 for a body that is not a JSON object.
    """
    if request.mimetype not in ("application/json", "application/vnd.api+json"):
        raise ApiError(415, "Unsupported media type",
                       "Send application/vnd.api+json or application/json.")
    body = request.get_json(silent=True)
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
