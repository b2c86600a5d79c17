"""The one JSON:API document builder. Every body this service writes outside the resource classes
(errors, actions, meta documents, the verification answer) is made by `encode`, so each carries the
`jsonapi` member and is serialised the same way: as Flask's default JSON provider serialises
(sorted keys, ASCII, its conversions of dates, UUIDs and decimals), with one encoder made once."""
import json

from flask import make_response
from flask.json.provider import DefaultJSONProvider

JSONAPI = "application/vnd.api+json"
_VERSION = {"version": "1.0"}
_ENCODER = json.JSONEncoder(ensure_ascii=DefaultJSONProvider.ensure_ascii, sort_keys=DefaultJSONProvider.sort_keys,
                            default=DefaultJSONProvider.default)


def encode(members: dict) -> bytes:
    """Return the document with these top-level members (`data`, `errors`, `meta`...)."""
    return _ENCODER.encode({**members, "jsonapi": _VERSION}).encode()


def respond(members: dict, status: int = 200, headers: dict | None = None):
    """Return a response carrying the document `encode(members)`."""
    response = make_response(encode(members), status)
    response.headers["Content-Type"] = JSONAPI
    response.headers.update(headers or {})
    return response
