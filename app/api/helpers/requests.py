"""Reading requests: the body limit, media types, JSON bodies, bodies of non-resource endpoints,
resource documents, query names, and the checks every /v1 query string and path goes through first.

Bad input is answered here, as a JSON:API error naming the parameter or the pointer, before it can
reach the library or the database (where it would be a 500: a RecursionError, an integer out of
the column's range, a NUL byte or a lone surrogate the driver cannot send).
"""
import functools
import io
import json
import math
import re
from datetime import datetime

import flask
from flask import current_app, request
from flask.json.provider import DefaultJSONProvider
from sqlalchemy import JSON
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.exceptions import RequestEntityTooLarge

from app.api.helpers import filters
from app.api.helpers.errors import ApiError, handle_error
from app.api.helpers.jsonapi import JSONAPI, Response
from app.api.helpers.values import MAX_ID, has_bad_text, no_json_constant

JSON_TYPES = ("application/json", JSONAPI)
MAX_JSON_DEPTH = 32  # a JSON:API document needs 4 (data, attributes, an attribute, its members)
MAX_PAGE_NUMBER = 1_000_000
MAX_SORT_FIELDS = 8
MAX_INCLUDES = 8
# Parameters the library reads once (the first value): a second value is refused, not ignored.
SINGLE_VALUED = re.compile(r"^(sort|include|filter|page\[[^\]]*\]|fields\[[^\]]*\]|filter\[[^\]]*\])$")
# JSON:API 1.0 reserves all-lowercase query parameter names for itself: a server refuses those it
# does not define (its own must have a character other than a-z: `group-by`, `filter[from]`).
SPEC_NAME = re.compile(r"[a-z]+")
SPEC_PARAMETERS = frozenset({"include", "fields", "sort", "page", "filter"})
_DIGITS = re.compile(r"[0-9]+")


# --- the body limit ---------------------------------------------------------------------------------

class BodyLimit:
    """WSGI middleware in front of everything (the verification fast path too): a request whose
    Content-Length exceeds MAX_CONTENT_LENGTH is answered 413 before a byte of its body is read, on
    every route. A chunked body (no Content-Length) is read up to the limit: over it, 413; within
    it, it is handed on as an ordinary body with its length, so nothing behind reads more of it."""

    READ_SIZE = 64 * 1024

    def __init__(self, flask_app, wsgi_app):
        self.flask_app = flask_app
        self.app = wsgi_app  # the next layer, named as werkzeug's middleware (ProxyFix) name it

    def __call__(self, environ, start_response):
        limit = self.flask_app.config.get("MAX_CONTENT_LENGTH")
        if limit is None:
            return self.app(environ, start_response)
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            # Only a server that ends the stream itself (gunicorn, werkzeug's for chunked bodies)
            # may be read without a length; behind any other, werkzeug sees an empty body.
            if environ.get("wsgi.input_terminated"):
                body = _read_at_most(environ["wsgi.input"], limit + 1, self.READ_SIZE)
                if len(body) > limit:
                    return self._refuse(environ, start_response, RequestEntityTooLarge(
                        f"The body is larger than the limit of {limit} bytes."))
                environ["wsgi.input"] = io.BytesIO(body)
                environ["CONTENT_LENGTH"] = str(len(body))
                del environ["HTTP_TRANSFER_ENCODING"]
        elif environ.get("CONTENT_LENGTH"):
            length = environ["CONTENT_LENGTH"]
            if not _DIGITS.fullmatch(length):
                return self._refuse(environ, start_response, ApiError(
                    400, "Bad request", "Content-Length must be a whole number of bytes."))
            if len(length) > 18 or int(length) > limit:
                return self._refuse(environ, start_response, RequestEntityTooLarge(
                    f"The body is larger than the limit of {limit} bytes."))
        return self.app(environ, start_response)

    def _refuse(self, environ, start_response, exc):
        with self.flask_app.app_context():
            return handle_error(exc)(environ, start_response)


class SlashlessPaths:
    """WSGI middleware in front of everything (the verification fast path too): a path under
    `prefix` that ends with a slash is served as the same path without it (`/v1/api-keys/` is
    `/v1/api-keys`, a POST or PATCH keeping its body: no redirect), so every layer behind (routing,
    links built from the request, the fast path) sees the one path. jsonapi-requests appends a slash
    to every URL by default. Werkzeug's `strict_slashes=False` would route such a path but leave the
    slash in `request.path` and the links built from it."""

    def __init__(self, wsgi_app, prefix):
        self.app = wsgi_app
        self.prefix = prefix.rstrip("/") + "/"

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.endswith("/") and path.startswith(self.prefix) and len(path) > len(self.prefix):
            environ["PATH_INFO"] = path[:-1]
        return self.app(environ, start_response)


def _read_at_most(stream, size, read_size):
    chunks, total = [], 0
    while total < size:
        chunk = stream.read(min(read_size, size - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


# --- media types -----------------------------------------------------------------------------------

def negotiate(content_type: str, accept: str, has_body: bool):
    """Refuse, as JSON:API 1.0 asks, its media type with parameters in Content-Type (415) and an
    Accept that lists it only with parameters (406; a `q` weight is none: it ends them); and a body
    that is not JSON (415). The one check of media types: every /v1 route's (check_media_types) and
    the verification fast path's, which calls it with the raw headers."""
    mimetype, _, parameters = content_type.partition(";")
    mimetype = mimetype.strip().lower()
    if mimetype == JSONAPI and parameters.strip():
        raise ApiError(415, "Unsupported media type", f"{JSONAPI} takes no media type parameters.")
    if has_body and mimetype not in JSON_TYPES:
        raise ApiError(415, "Unsupported media type", f"Send {JSONAPI} or application/json.")
    if ";" in accept and JSONAPI in accept.lower() and _only_with_parameters(accept):  # no ";": no parameters
        raise ApiError(406, "Not acceptable", f"Accept {JSONAPI} without media type parameters.")


def _only_with_parameters(accept: str) -> bool:
    """Whether every instance of the JSON:API media type in `accept` has media type parameters."""
    instances = [parameters for kind, *parameters in (part.split(";") for part in accept.lower().split(","))
                 if kind.strip() == JSONAPI]
    return bool(instances) and all(_has_media_parameters(parameters) for parameters in instances)


def _has_media_parameters(parameters) -> bool:
    names = [name for name in (parameter.partition("=")[0].strip() for parameter in parameters) if name]
    return bool(names) and names[0] != "q"  # those after q are accept extensions


def check_media_types():
    """negotiate() for the current request."""
    negotiate(request.headers.get("Content-Type", ""), request.headers.get("Accept", ""),
              bool(request.content_length))


# --- JSON bodies -----------------------------------------------------------------------------------

class JsonTooDeep(ValueError):
    pass


def _finite(text):
    value = float(text)
    if not math.isfinite(value):  # 1e400: a float Python holds as inf, which no JSON can carry back
        raise ValueError(f"{text} is out of range")
    return value


def json_depth(value) -> int:
    """Return how deeply arrays and objects nest in `value` (0 for a scalar), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def strict_loads(data, **kwargs):
    """Parse a request body: JSON only (no NaN, Infinity, or numbers beyond a float), at most
    MAX_JSON_DEPTH levels deep. A body that breaks a rule is a ValueError, like any malformed body
    (never a RecursionError), so `get_json(silent=True)` answers None for it, everywhere (rate limit
    key functions included)."""
    if isinstance(data, (bytes, bytearray)):
        data = data.decode(json.detect_encoding(data), "surrogatepass")
    try:  # one decoder for every call: building one per call costs more than parsing a small body
        value = _DECODER.decode(data) if not kwargs else json.loads(
            data, **{"parse_constant": no_json_constant, "parse_float": _finite, **kwargs})
    except RecursionError:
        raise JsonTooDeep(f"The JSON is nested more than {MAX_JSON_DEPTH} levels deep.") from None
    # Fewer brackets than the limit cannot nest deeper than it: most bodies skip the walk.
    if data.count("{") + data.count("[") > MAX_JSON_DEPTH and json_depth(value) > MAX_JSON_DEPTH:
        raise JsonTooDeep(f"The JSON is nested more than {MAX_JSON_DEPTH} levels deep.")
    return value


_DECODER = json.JSONDecoder(parse_constant=no_json_constant, parse_float=_finite)


class JsonProvider(DefaultJSONProvider):
    """Flask's JSON, parsing strictly (Flask parses request bodies with `app.json`)."""

    def loads(self, s, **kwargs):
        return strict_loads(s, **kwargs)


class Request(flask.Request):
    def on_json_loading_failed(self, e):
        if e is None:  # not a JSON media type
            return super().on_json_loading_failed(e)
        raise ApiError(400, "Bad request", f"The body is not valid JSON: {e}", pointer="/")


def check_json_body():
    """Refuse a JSON body nested too deeply with its reason (the views would see one that does not
    parse, and answer for it as for malformed JSON)."""
    if not request.is_json or request.get_json(silent=True) is not None:
        return
    data = request.get_data(cache=True)
    if not data:
        return
    try:
        strict_loads(data)
    except JsonTooDeep as error:
        raise ApiError(400, "Bad request", str(error), pointer="/") from None
    except ValueError:
        pass  # malformed: each view answers it as before


def init_app(app):
    """Parse bodies strictly, limit their size and serve /v1 paths with a trailing slash (outside
    the verification fast path); answer 204s without a Content-Type."""
    from app.api import bp

    app.json = JsonProvider(app)
    app.request_class = Request
    app.response_class = Response
    app.wsgi_app = SlashlessPaths(BodyLimit(app, app.wsgi_app), bp.url_prefix)


def json_body() -> dict:
    """Return the request's attributes: `data.attributes` of a JSON:API document or a plain object.

    Raises 400 for a body that is not a JSON object (its media type is check_media_types' to judge).
    """
    return read_attributes(request.get_data(cache=True))


def read_attributes(data: bytes) -> dict:
    """json_body() of a request with this body: the one reading of JSON bodies, which the
    verification fast path (outside Flask) shares."""
    try:
        body = strict_loads(data) if data else None
    except JsonTooDeep as error:
        raise ApiError(400, "Bad request", str(error), pointer="/") from None
    except ValueError:
        body = None
    return attributes_of(body)


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
    if not any(k in ("sort", "include") or k.startswith(("fields[", "filter")) for k in request.args):
        return
    pairs = []
    for key, value in request.args.items(multi=True):
        if key == "sort":
            value = ",".join(("-" if part.startswith("-") else "") + part.lstrip("-").replace("-", "_")
                             for part in value.split(","))
        elif key.startswith("fields[") or key == "include":
            value = value.replace("-", "_")
        elif key.startswith("filter["):
            key = key.replace("-", "_")
        elif key == "filter":
            value = _undasherize_filter(value)
        pairs.append((key, value))
    flask.g.query_as_sent = request.args  # what links echo (documents.finish_pagination)
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
    _name_types_as_we_do(data)
    if data.get("type") != type_:
        raise ApiError(409, "Conflict", f"data.type must be '{type_}'.", pointer="/data/type")
    for member in ("attributes", "relationships"):
        if member in data and not isinstance(data[member], dict):
            raise ApiError(400, "Bad request", f"data.{member} must be an object.", pointer=f"/data/{member}")
    for name, relationship in data.get("relationships", {}).items():
        if isinstance(relationship, dict) and "data" not in relationship:
            continue  # links only, as fetched: it changes nothing (documents.ClientDocuments drops it)
        linkage = relationship.get("data") if isinstance(relationship, dict) else None
        if not isinstance(linkage, dict) or not _DIGITS.fullmatch(str(linkage.get("id", ""))):
            raise ApiError(422, "Validation error", "A relationship is {'data': {'type': ..., 'id': '<number>'}}.",
                           pointer=f"/data/relationships/{name}")
        if int(linkage["id"]) > MAX_ID:  # no such row: found missing, as any missing one
            raise ApiError(404, "Not found", f"No {linkage.get('type', 'resource')} has this id.",
                           pointer=f"/data/relationships/{name}")
    bad = _bad_text(data.get("attributes", {}), "/data/attributes")
    if bad is not None:
        raise ApiError(422, "Validation error", "Text may not contain NUL characters or unpaired surrogates.",
                       pointer=bad)


def check_relationship_document(body):
    """Refuse a relationship endpoint's body whose `data` is not linkage: null, one resource
    identifier, or a list of them (the library would fail on anything else)."""
    data = body.get("data", ...) if isinstance(body, dict) else ...
    identifiers = data if isinstance(data, list) else [] if data is None else [data]
    if data is ... or any(not isinstance(item, dict) or not isinstance(item.get("type"), str)
                          or not _DIGITS.fullmatch(str(item.get("id", ""))) for item in identifiers):
        raise ApiError(400, "Bad request", "A relationship document's data is null, {'type': ..., 'id': "
                       "'<number>'} or a list of those.", pointer="/data")


def check_sort(schema, model, sort: str):
    """Refuse sorting on an attribute held as JSON (scopes, tags, metadata...): PostgreSQL has no
    order for json values, and a list has no meaningful one."""
    for name in (part.lstrip("-") for part in sort.split(",")):
        field = schema._declared_fields.get(name)
        column = getattr(model, getattr(field, "attribute", None) or name, None)
        if field is not None and isinstance(getattr(column, "type", None), JSON):
            raise ApiError(400, "Bad request", f"{name.replace('_', '-')} holds JSON: it cannot be sorted on.",
                           parameter="sort")


_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])([A-Z])")


def _kebab_case(type_):
    return _CAMEL_HUMP.sub(lambda hump: "-" + hump.group(1).lower(), type_) if isinstance(type_, str) else type_


def _name_types_as_we_do(data: dict):
    """Read a type written in camelCase (`apiKeys`: kitsu camel-cases the types it sends, by
    default) as the kebab-case type it names (`api-keys`), in the resource and in its relationships'
    linkage. The parsed body is Flask's cached one, so the schema reads the types rewritten."""
    if "type" in data:
        data["type"] = _kebab_case(data["type"])
    relationships = data.get("relationships")
    for relationship in relationships.values() if isinstance(relationships, dict) else ():
        linkage = relationship.get("data") if isinstance(relationship, dict) else None
        if isinstance(linkage, dict) and "type" in linkage:
            linkage["type"] = _kebab_case(linkage["type"])


def _pointer_token(key):
    return str(key).replace("~", "~0").replace("/", "~1")


def _bad_text(value, pointer):
    """Return the JSON pointer of the first string in `value` with bad text (of the object holding
    a bad member name), or None."""
    stack = [(value, pointer)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if has_bad_text(node):
                return path
        elif isinstance(node, dict):
            if any(has_bad_text(str(key)) for key in node):
                return path
            stack.extend((child, f"{path}/{_pointer_token(key)}") for key, child in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((child, f"{path}/{index}") for index, child in reversed(list(enumerate(node))))
    return None


# --- query strings and paths, before any view ------------------------------------------------------

def check_query():
    """Refuse what no list can answer: NUL bytes, all-lowercase names JSON:API does not define,
    repeated JSON:API parameters, page numbers and sizes out of bounds, too many sort keys or
    includes, fieldsets of unknown types, and filters the library or the database would fail on.
    Runs before `undasherize_query`."""
    args = request.args
    for name, value in args.items(multi=True):
        if "\x00" in name or "\x00" in value:
            raise ApiError(400, "Bad request", "Query parameters may not contain NUL bytes.", parameter=name)
    known = SPEC_PARAMETERS | getattr(_view(), "deprecated_parameters", frozenset())
    for name in args:
        if SPEC_NAME.fullmatch(name) and name not in known:
            raise ApiError(400, "Bad request", f"Unknown query parameter {name!r}: all-lowercase names are "
                           f"JSON:API's ({', '.join(sorted(SPEC_PARAMETERS))}).", parameter=name)
        if SINGLE_VALUED.match(name) and len(args.getlist(name)) > 1:
            raise ApiError(400, "Bad request", f"{name} may be given once.", parameter=name)
    _check_page(args)
    if "sort" in args:
        if len(args["sort"].split(",")) > MAX_SORT_FIELDS:
            raise ApiError(400, "Bad request",
                           f"Sort on at most {MAX_SORT_FIELDS} attributes.", parameter="sort")
    if "include" in args:
        names = args["include"].split(",")
        depth = current_app.config.get("MAX_INCLUDE_DEPTH") or 1
        if len(names) > MAX_INCLUDES or any(name.count(".") >= depth for name in names):
            raise ApiError(400, "Bad request",
                           f"Include at most {MAX_INCLUDES} relationships, {depth} deep.", parameter="include")
    for name in args:
        if name.startswith("fields[") or name == "fields":
            _check_fieldset(name)
    filters.check_query_filters(args, _resource_of_endpoint())


def _check_page(args):
    bounds = {"size": current_app.config["MAX_PAGE_SIZE"], "number": MAX_PAGE_NUMBER}
    for key, maximum in bounds.items():
        name = f"page[{key}]"
        value = args.get(name)
        if value is None:
            continue
        if not (_DIGITS.fullmatch(value) and 1 <= int(value) <= maximum):
            raise ApiError(400, "Bad request", f"{name} is a whole number from 1 to {maximum}.",
                           parameter=name)


def _check_fieldset(name):
    from flask_rest_jsonapi_next.schema import get_schema_from_type

    type_ = name[len("fields["):-1] if name.startswith("fields[") and name.endswith("]") else ""
    try:
        get_schema_from_type(type_)
    except ValueError:
        raise ApiError(400, "Bad request",
                       "Sparse fieldsets are fields[<type>] with a resource type such as api-keys.",
                       parameter=name) from None


def _view():
    """Return the view function serving this request (None when no route matched)."""
    return current_app.view_functions.get(request.endpoint)


def _resource_of_endpoint():
    """Return the library resource class serving this request, or None for a plain view."""
    return getattr(_view(), "view_class", None)


def deprecated_parameters(names: frozenset, since: datetime):
    """Let a view read these all-lowercase query parameters for a release after their renaming
    (check_query lets them through), answering a request that uses one with `Deprecation: @<since>`
    (RFC 9745)."""
    def decorate(view):
        @functools.wraps(view)
        def deprecating(*args, **kwargs):
            response = flask.make_response(view(*args, **kwargs))
            if not names.isdisjoint(request.args):
                response.headers["Deprecation"] = f"@{int(since.timestamp())}"
            return response

        deprecating.deprecated_parameters = names
        return deprecating
    return decorate


def check_path_ids():
    """An id beyond the id columns' range names no row: the same 404 as any missing id (after the
    same authentication), instead of an integer the database cannot take."""
    if any(isinstance(value, int) and value > MAX_ID for value in (request.view_args or {}).values()):
        from app.api.helpers.auth import require

        require()
        raise ApiError(404, "Not found", "Resource not found.", parameter="id")

