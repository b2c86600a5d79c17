"""The one JSON:API document builder. Every body this service writes outside the resource classes
(errors, actions, meta documents, the verification answer) is made by `encode`, so each carries the
`jsonapi` member and is serialised the same way (the app's JSON provider: sorted keys, ISO dates)."""
from flask import json, make_response

JSONAPI = "application/vnd.api+json"
_VERSION = {"version": "1.0"}


def encode(members: dict) -> bytes:
    """Return the document with these top-level members (`data`, `errors`, `meta`...)."""
    return json.dumps({**members, "jsonapi": _VERSION}).encode()


def respond(members: dict, status: int = 200, headers: dict | None = None):
    """Return a response carrying the document `encode(members)`."""
    response = make_response(encode(members), status)
    response.headers["Content-Type"] = JSONAPI
    response.headers.update(headers or {})
    return response
