"""JSON:API error documents: one exception type, one handler for everything else, one title per
kind of error."""
import logging
import math

import marshmallow
from flask import current_app, has_request_context, request
from flask_rest_jsonapi_next import JsonApiException
from flask_rest_jsonapi_next.error_responses.exception_converters import convert
from marshmallow_jsonapi.exceptions import IncorrectTypeError
from redis.exceptions import RedisError
from sqlalchemy.exc import DataError, IntegrityError, NoResultFound, OperationalError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException, default_exceptions
from werkzeug.http import HTTP_STATUS_CODES

from app.api.helpers.jsonapi import respond

log = logging.getLogger(__name__)

# The title of each kind of error: its status, or its status and code where one status has several
# kinds. Every error document is titled from here, whoever raised the error (our code, the JSON:API
# library, werkzeug, marshmallow), so that clients see one spelling per kind.
TITLES = {
    400: "Bad request",
    (400, "CREDENTIAL_IN_QUERY"): "Credentials in the query string",
    401: "Unauthorized",
    (401, "NOT_FOUND"): "Unknown API key",
    (401, "REVOKED"): "Revoked API key",
    (401, "SUSPENDED"): "Suspended API key",
    (401, "EXPIRED"): "Expired API key",
    403: "Forbidden",
    (403, "FORBIDDEN"): "Address not allowed",
    (403, "INSUFFICIENT_SCOPES"): "Insufficient scope",
    (403, "SESSION_REQUIRED"): "Session required",
    (403, "CURRENT_PASSWORD_REQUIRED"): "Current password required",
    (403, "SCOPE_NOT_GRANTABLE"): "Scope not grantable",
    (403, "RESTRICTION_NOT_GRANTABLE"): "Restriction not grantable",
    (403, "KEY_NOT_COVERED"): "Key not covered",
    (403, "ROTATED_SECRET"): "Rotated secret",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    (409, "KEY_LIMIT_REACHED"): "Too many keys",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Validation error",
    429: "Too many requests",
    (429, "QUOTA_EXCEEDED"): "Quota exceeded",
    500: "Internal server error",
    503: "Service unavailable",
}
UNAVAILABLE_RETRY_SECONDS = 5


def title_of(status: int, code: str | None = None) -> str:
    """Return the title of an error with this status and code (a status werkzeug may answer that
    the table lacks: its reason phrase)."""
    return TITLES.get((status, code)) or TITLES.get(status) or HTTP_STATUS_CODES.get(status, "Error").capitalize()


def retry_after(seconds: float) -> dict:
    """Return the Retry-After header of a 429 or 503 that may be retried in `seconds`: whole seconds
    rounded up, so that a client that waits that long is served (at least 1: never "retry at once")."""
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


class ApiError(JsonApiException):
    """An error answered as a JSON:API document; `code` is a stable machine-readable reason.

    Its document is titled from TITLES by status and code (error_document), whatever `title` says."""

    def __init__(self, status, title, detail="", *, code=None, pointer=None, parameter=None,
                 headers=None):
        source = {"pointer": pointer} if pointer else {"parameter": parameter} if parameter else None
        super().__init__(detail=detail, source=source, title=title, status=str(status), code=code)
        self.headers = headers or {}


def not_found(what="Resource", parameter="id"):
    """Return the 404 used for missing *and* foreign objects, so neither leaks."""
    return ApiError(404, "Not found", f"{what} not found.", parameter=parameter)


def error_document(errors, status, headers=None):
    """Return a response carrying a JSON:API `errors` document, each error titled from TITLES."""
    for error in errors:
        error["title"] = title_of(int(error["status"]), error.get("code"))
    return respond({"errors": errors}, int(status), headers)


def _error(status, detail, **extra):
    return {"status": str(status), "detail": detail, **extra}


# Paths whose errors another API writes in its own format (the LLM gateway's are OpenAI's): prefix ->
# handler. Routing errors (404, 405) reach the app's handler, not the blueprint's.
OTHER_FORMATS: dict = {}


def handle_error(exc):
    """Turn any exception into a JSON:API error document; never a traceback or an HTML page."""
    if has_request_context():
        for prefix, handler in OTHER_FORMATS.items():
            if request.path.startswith(prefix):
                return handler(exc)
    if isinstance(exc, JsonApiException):  # ApiError and the library's
        error = {**exc.to_dict(), "status": str(exc.status)}
        headers = dict(getattr(exc, "headers", None) or {})
        if error["status"] == "405":
            headers.setdefault("Allow", _other_methods())
        return error_document([error], exc.status, headers)
    if isinstance(exc, IncorrectTypeError):
        return error_document([_error(409, exc.detail, source={"pointer": exc.pointer})], 409)
    if isinstance(exc, marshmallow.ValidationError):
        errors = []
        for item in convert(exc):
            detail = item.get("detail")
            detail = " ".join(map(str, detail)) if isinstance(detail, list) else str(detail)
            errors.append(_error(422, detail, source=item.get("source") or {"pointer": "/data"}))
        return error_document(errors, 422)
    if isinstance(exc, NoResultFound):
        return error_document([_error(404, "Resource not found.", source={"parameter": "id"})], 404)
    if isinstance(exc, DataError) or (isinstance(exc, StatementError)
                                      and isinstance(exc.orig, (ValueError, TypeError, OverflowError))):
        _rollback()  # a value the column could not take (out of range, a NUL byte), e.g. in a filter
        log.warning("a value did not fit its column: %s", type(getattr(exc, "orig", exc)).__name__)
        return error_document([_error(400, "A value in the request does not fit its attribute.",
                                      **_source_of_values())], 400)
    if isinstance(exc, (RecursionError, UnicodeError, OverflowError)):
        # Input the checks in helpers/requests.py should have refused (too deep, a lone surrogate,
        # a number out of range): still the client's, never a 500.
        _rollback()
        log.warning("input reached %s at %s", type(exc).__name__, request.endpoint if has_request_context() else "-")
        return error_document([_error(400, "A value in the request cannot be processed.",
                                      **_source_of_values())], 400)
    if isinstance(exc, (StaleDataError, IntegrityError)):
        _rollback()
        return error_document([_error(409, "The resource was changed concurrently "
                                      "or conflicts with another one; retry.")], 409)
    if isinstance(exc, (OperationalError, PoolTimeoutError)):  # database down, hung, or a statement timed out
        _rollback()
        log.warning("database unavailable: %s", type(getattr(exc, "orig", None) or exc).__name__)
        return error_document([_error(503, "The database is unavailable; retry later.",
                                      code="DATABASE_UNAVAILABLE")], 503, retry_after(UNAVAILABLE_RETRY_SECONDS))
    if isinstance(exc, RedisError):  # limiter storage down with RATELIMIT_ON_STORAGE_ERROR=closed
        log.warning("rate limit storage unreachable: %s", type(exc).__name__)
        return error_document([_error(503, "The rate limit storage is unreachable; retry later.",
                                      code="LIMITS_UNAVAILABLE")], 503, retry_after(UNAVAILABLE_RETRY_SECONDS))
    if isinstance(exc, HTTPException):
        if exc.code == 429:  # flask-limiter's; its Retry-After is added with its headers (helpers/ratelimit.py)
            return error_document([_error(429, f"Rate limit exceeded: {exc.description}.",
                                          code="RATE_LIMITED")], 429)
        headers = {"Allow": ", ".join(sorted(served_methods()))} if exc.code == 405 and has_request_context() \
            else None
        return error_document([_error(exc.code, exc.description or exc.name)], exc.code, headers)
    _rollback()
    # The type and traceback only: messages of SQL errors carry no parameters (hide_parameters).
    log.error("Unhandled %s", type(exc).__name__, exc_info=exc)
    return error_document([_error(500, "The server could not complete the request.")], 500)


def served_methods() -> set:
    """Return the methods the requested URL is served with, the one answer for a 405's Allow and a
    CORS preflight (helpers/cors.py): its routes' methods (HEAD and OPTIONS included), less those a
    route's resource class refuses at this URL (its `served_methods(view_args)`, e.g. POST at
    /v1/users/<id>/api-keys, the route of /v1/api-keys)."""
    adapter = current_app.create_url_adapter(request)
    served = set()
    for method in adapter.allowed_methods():
        try:
            rule, view_args = adapter.match(method=method, return_rule=True)
        except HTTPException:
            served.add(method)
            continue
        view_class = getattr(current_app.view_functions.get(rule.endpoint), "view_class", None)
        serves = getattr(view_class, "served_methods", None)
        if method in ("HEAD", "OPTIONS") or serves is None or method in serves(view_args):
            served.add(method)
    return served


def _other_methods() -> str:
    """Return the Allow header of a 405 a view raised: the methods served here but this one."""
    return ", ".join(sorted(served_methods() - {request.method}))


def _source_of_values():
    """Name where a value that did not fit probably came from: the body, else the filter."""
    if not has_request_context():
        return {}
    if request.method in ("POST", "PATCH") and request.content_length:
        return {"source": {"pointer": "/data" if request.blueprint == "v1" and "data" in (
            request.get_json(silent=True) or {}) else "/"}}
    names = [name for name in request.args if name == "filter" or name.startswith("filter[")]
    return {"source": {"parameter": names[0]}} if names else {}


def _rollback():
    from app.extensions import db

    try:
        db.session.rollback()
    except Exception:  # the session may be unusable; the request is failing anyway
        current_app.logger.warning("rollback after an error failed")


def init_app(app):
    """Answer every error, from our code, Flask, werkzeug or a library, as JSON:API."""
    app.register_error_handler(Exception, handle_error)
    for code in default_exceptions:  # overrides the per-code handlers the JSON:API library installs
        app.register_error_handler(code, handle_error)
