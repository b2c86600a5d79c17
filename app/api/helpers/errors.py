"""JSON:API error documents: one exception type, one handler for everything else."""
import logging

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

from app.api.helpers.jsonapi import respond

log = logging.getLogger(__name__)


class ApiError(JsonApiException):
    """An error answered as a JSON:API document; `code` is a stable machine-readable reason."""

    def __init__(self, status, title, detail="", *, code=None, pointer=None, parameter=None,
                 headers=None):
        source = {"pointer": pointer} if pointer else {"parameter": parameter} if parameter else None
        super().__init__(detail=detail, source=source, title=title, status=str(status), code=code)
        self.headers = headers or {}


def not_found(what="Resource", parameter="id"):
    """Return the 404 used for missing *and* foreign objects, so neither leaks."""
    return ApiError(404, "Not found", f"{what} not found.", parameter=parameter)


def error_document(errors, status, headers=None):
    """Return a response carrying a JSON:API `errors` document."""
    return respond({"errors": errors}, int(status), headers)


def _error(status, title, detail, **extra):
    return {"status": str(status), "title": title, "detail": detail, **extra}


def handle_error(exc):
    """Turn any exception into a JSON:API error document; never a traceback or an HTML page."""
    if isinstance(exc, ApiError) or isinstance(exc, JsonApiException):
        errors = [exc.to_dict()]
        errors[0]["status"] = str(exc.status)
        return error_document(errors, exc.status, getattr(exc, "headers", None))
    if isinstance(exc, IncorrectTypeError):
        return error_document([_error(409, "Incorrect type", exc.detail,
                                      source={"pointer": exc.pointer})], 409)
    if isinstance(exc, marshmallow.ValidationError):
        errors = []
        for item in convert(exc):
            detail = item.get("detail")
            detail = " ".join(map(str, detail)) if isinstance(detail, list) else str(detail)
            errors.append(_error(422, item.get("title") or "Validation error", detail,
                                 source=item.get("source") or {"pointer": "/data"}))
        return error_document(errors, 422)
    if isinstance(exc, NoResultFound):
        return error_document([_error(404, "Not found", "Resource not found.",
                                      source={"parameter": "id"})], 404)
    if isinstance(exc, DataError) or (isinstance(exc, StatementError)
                                      and isinstance(exc.orig, (ValueError, TypeError, OverflowError))):
        _rollback()  # a value the column could not take (out of range, a NUL byte), e.g. in a filter
        log.warning("a value did not fit its column: %s", type(getattr(exc, "orig", exc)).__name__)
        return error_document([_error(400, "Bad request", "A value in the request does not fit its attribute.",
                                      **_source_of_values())], 400)
    if isinstance(exc, (RecursionError, UnicodeError, OverflowError)):
        # Input the checks in helpers/requests.py should have refused (too deep, a lone surrogate,
        # a number out of range): still the client's, never a 500.
        _rollback()
        log.warning("input reached %s at %s", type(exc).__name__, request.endpoint if has_request_context() else "-")
        return error_document([_error(400, "Bad request", "A value in the request cannot be processed.",
                                      **_source_of_values())], 400)
    if isinstance(exc, (StaleDataError, IntegrityError)):
        _rollback()
        return error_document([_error(409, "Conflict", "The resource was changed concurrently "
                                      "or conflicts with another one; retry.")], 409)
    if isinstance(exc, (OperationalError, PoolTimeoutError)):  # database down, hung, or a statement timed out
        _rollback()
        log.warning("database unavailable: %s", type(getattr(exc, "orig", None) or exc).__name__)
        return error_document([_error(503, "Service unavailable", "The database is unavailable; retry later.",
                                      code="DATABASE_UNAVAILABLE")], 503, {"Retry-After": "5"})
    if isinstance(exc, RedisError):  # limiter storage down with RATELIMIT_ON_STORAGE_ERROR=closed
        log.warning("rate limit storage unreachable: %s", type(exc).__name__)
        return error_document([_error(503, "Service unavailable", "The rate limit storage is unreachable; "
                                      "retry later.", code="LIMITS_UNAVAILABLE")], 503, {"Retry-After": "5"})
    if isinstance(exc, HTTPException):
        detail = exc.description or exc.name
        if exc.code == 429:
            detail = f"Rate limit exceeded: {exc.description}."
            return error_document([_error(429, "Too many requests", detail,
                                          code="RATE_LIMITED")], 429)
        headers = {"Allow": ", ".join(exc.valid_methods)} if getattr(exc, "valid_methods", None) else None
        return error_document([_error(exc.code, exc.name, detail)], exc.code, headers)
    _rollback()
    # The type and traceback only: messages of SQL errors carry no parameters (hide_parameters).
    log.error("Unhandled %s", type(exc).__name__, exc_info=exc)
    return error_document([_error(500, "Internal server error",
                                  "The server could not complete the request.")], 500)


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
