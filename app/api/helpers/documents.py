"""JSON:API documents as clients read and send them: the documents built outside the resource
classes (actions, relationships), and `ClientDocuments`, the resources' side of the same rules."""
import json
from datetime import UTC, datetime
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

from flask import g, request
from marshmallow import fields
from sqlalchemy.exc import NoResultFound

from app.api.helpers.errors import ApiError
from app.api.helpers.jsonapi import respond

NO_STORE = {"Cache-Control": "no-store"}


def secret_headers(schema_cls) -> dict:
    """Return the headers of a document dumped by `schema_cls`: no cache may keep one that carries
    a secret (a key's creation or rotation)."""
    return NO_STORE if "secret" in schema_cls._declared_fields else {}


def document(schema_cls, obj, status=200):
    """Return a response with `obj` dumped by `schema_cls` as a JSON:API document."""
    return respond(schema_cls().dump(obj), status, secret_headers(schema_cls))


def relationship_document(result):
    """Return a relationship resource's answer with string ids (the library hands out the model's
    integers) and an absolute self link (the library's is the request's path), as every link is."""
    data = result.get("data")
    for item in data if isinstance(data, list) else [data] if data else []:
        item["id"] = str(item["id"])
    result["links"]["self"] = request.base_url
    return result


def check_type(type_):
    """Refuse a JSON:API document sent to an action or the login whose data.type is not `type_`
    (409, as the resources answer); a plain JSON object, or a document naming no type, is taken."""
    body = request.get_json(silent=True)
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(data, dict) and "type" in data and data["type"] != type_:
        raise ApiError(409, "Conflict", f"data.type must be '{type_}'.", pointer="/data/type")


def refuse_client_id(data):
    """JSON:API: a server that does not accept client-generated ids answers 403."""
    if "id" in data:
        raise ApiError(403, "Forbidden", "Client-generated ids are not supported.", pointer="/data/id")


def _page_number(url) -> int:
    return int(parse_qs(urlsplit(url).query)["page[number]"][0])


def finish_pagination(result):
    """Return a collection document whose `prev` never points past `last` (for a page past the
    last one, the library's `prev` is the page before it, as empty, where a client would go on
    paging back through nothing), and whose links carry the query as the client wrote it
    (`sort=-created-at`, not the library's `-created_at`), with their own page."""
    links = result.get("links", {})
    if "prev" in links and _page_number(links["prev"]) > _page_number(links["last"]):
        links["prev"] = links["last"]
    sent = g.get("query_as_sent")
    if sent is not None:
        kept = [(key, value) for key, value in sent.items(multi=True) if not key.startswith("page[")]
        for name, url in links.items():
            parts = urlsplit(url)
            pages = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True)
                     if key.startswith("page[")]
            links[name] = urlunsplit(parts._replace(query=urlencode(kept + pages)))
    return result


def _instant(text):
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _same(field, sent, shown) -> bool:
    """Whether a sent value is the one a GET shows: equal as JSON (1 is not true), times as the same
    instant however written (Z or +00:00; without an offset, UTC)."""
    if isinstance(field, fields.DateTime) and isinstance(sent, str) and isinstance(shown, str):
        return _instant(sent) == _instant(shown)
    return json.dumps(sent, sort_keys=True) == json.dumps(shown, sort_keys=True)


def _read_only(member, name):
    return ApiError(422, "Validation error", f"{name} is read-only.", pointer=f"/data/{member}/{name}")


def settle_members(schema_cls, data, stored=None):
    """Make a POST or PATCH `data` object loadable as clients send it (jsonapi-requests and devour
    re-send every attribute they fetched, relationships as links), in place:

    - with `stored` (a PATCH), an attribute equal to what a GET of it shows changes nothing and is
      dropped, read-only or not (an unchanged is-admin needs no admin; an unchanged expires-at is
      not checked again);
    - a relationship without `data` changes nothing and is dropped;
    - what remains of a read-only member is a change: 422 naming it as read-only.
    """
    schema = schema_cls()
    by_name = {field.data_key: field for field in schema.fields.values()}
    shown = schema.dump(stored)["data"]["attributes"] if stored is not None else {}
    attributes, relationships = data.get("attributes", {}), data.get("relationships", {})
    for name, value in list(attributes.items()):
        field = by_name.get(name)
        if field is None:
            continue  # unknown: the library's 422
        if name in shown and _same(field, value, shown[name]):
            del attributes[name]
        elif field.dump_only:
            raise _read_only("attributes", name)
    for name, value in list(relationships.items()):
        if isinstance(value, dict) and "data" not in value:
            del relationships[name]
        elif name in by_name and by_name[name].dump_only:
            raise _read_only("relationships", name)


class ClientDocuments:
    """Resource mixin: POST and PATCH documents are settled (`settle_members`) before the library
    loads them, a PATCH whose data.id is not the URL's is a 409, and a list's `prev` link stays
    within its pages and echo the client's query (`finish_pagination`)."""

    def before_marshmallow(self, args, kwargs):
        if request.method not in ("POST", "PATCH"):
            return
        # Guarded checked its shape; the library loads this same parsed body (Flask caches it) next.
        data = request.get_json(silent=True)["data"]
        stored = None
        if request.method == "PATCH":
            if "id" in data and str(data["id"]) != str(kwargs["id"]):
                raise ApiError(409, "Conflict", "data.id must be the id in the URL.", pointer="/data/id")
            try:
                stored = self._data_layer.get_object(kwargs)
            except NoResultFound:
                pass  # missing or not the caller's: the library's 404, after its own checks as ever
        settle_members(self.schema, data, stored)

    def after_get(self, result):
        return finish_pagination(result)
