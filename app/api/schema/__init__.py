"""marshmallow-jsonapi schemas: attribute names are dasherized, ids are strings, types are plural
and name the collection (`api-keys` at /v1/api-keys), as JSON:API clients (kitsu, devour,
jsonapi-client) derive one from the other by default.

Every link is absolute, built from the request (its host, through ProxyFix when TRUSTED_PROXIES
is set): the library writes collection and pagination links that way, so resources and
relationships do too, and a client never has to guess what a relative link is relative to.
"""
from datetime import UTC
from urllib.parse import urljoin

import flask
from marshmallow_jsonapi import fields
from marshmallow_jsonapi.flask import Relationship as _Relationship
from marshmallow_jsonapi.flask import Schema as _Schema


def dasherize(text: str) -> str:
    return text.replace("_", "-")


NAIVE_TIME_IS_UTC = "A time without a UTC offset (2030-01-01T00:00:00) is taken as UTC."


def utc_datetime(**kwargs):
    """A time attribute clients may send without an offset: such a time is taken as UTC (what the
    service answers in), not refused, as its description in the OpenAPI document says. Text that is
    no ISO 8601 time is a 422 "Not a valid datetime." naming the attribute."""
    metadata = {"description": NAIVE_TIME_IS_UTC, **kwargs.pop("metadata", {})}
    return fields.AwareDateTime(default_timezone=UTC, metadata=metadata, **kwargs)


class Schema(_Schema):
    def generate_url(self, view_name, **kwargs):
        return flask.url_for(view_name, _external=True, **kwargs) if view_name else None


class Relationship(_Relationship):
    def get_url(self, obj, view_name, view_kwargs):
        url = super().get_url(obj, view_name, view_kwargs)
        return url and urljoin(flask.request.host_url, url)
