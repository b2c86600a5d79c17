"""A pytest plugin: every answer with the JSON:API media type that a Flask test client receives is
checked against the JSON:API 1.0 schema (tests/jsonapi-1.0.schema.json; its source is in
tests/jsonapi-1.0.schema.md). A document that breaks it fails the test at the request that got it.

Enabled by `pytest_plugins = ["tests.jsonapi_conformance"]` in tests/conftest.py, or for one run
with `-p tests.jsonapi_conformance`. Formats (the links' `uri-reference`) are not checked.
"""
import json
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft6Validator
from jsonschema.exceptions import best_match

JSONAPI = "application/vnd.api+json"
VALIDATOR = Draft6Validator(json.loads((Path(__file__).parent / "jsonapi-1.0.schema.json").read_text()))


def nonconformity(response) -> str | None:
    """Return why `response` is not a JSON:API 1.0 document, or None (also for another media type
    and for an answer without a body). Beyond the schema: the media type carries no parameters (a
    MUST of the spec), and every link is an absolute URL (Latchkey's one form of links)."""
    if response.mimetype != JSONAPI or not response.data:
        return None
    if response.headers["Content-Type"] != JSONAPI:
        return f"Content-Type {response.headers['Content-Type']!r} carries media type parameters"
    try:
        document = json.loads(response.data)
    except ValueError as error:
        return f"not JSON: {error}"
    error = best_match(VALIDATOR.iter_errors(document))
    if error is not None:
        where = "/" + "/".join(map(str, error.absolute_path))
        return f"{error.message} at {where}"
    relative = next(_relative_links(document, ""), None)
    return None if relative is None else f"a relative link at {relative}"


def _relative_links(value, where):
    """Yield the JSON pointer of every link (a string or a link object's `href` under a `links`
    member) that is not an absolute http(s) URL."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield from _relative_links(item, f"{where}/{index}")
    elif isinstance(value, dict):
        for name, item in value.items():
            if name == "links" and isinstance(item, dict):
                for kind, link in item.items():
                    href = link.get("href") if isinstance(link, dict) else link
                    if href is not None and not str(href).startswith(("http://", "https://")):
                        yield f"{where}/links/{kind}"
            else:
                yield from _relative_links(item, f"{where}/{name}")


class ConformingClient(FlaskClient):
    """A test client that fails the test on an answer that is not a JSON:API 1.0 document."""

    def open(self, *args, **kwargs):
        response = super().open(*args, **kwargs)
        problem = nonconformity(response)
        if problem is not None:
            request = response.request
            raise AssertionError(f"{request.method} {request.path} answered {response.status_code}, not a "
                                 f"JSON:API 1.0 document: {problem}\n{response.get_data(as_text=True)}")
        return response


@pytest.fixture(autouse=True)
def jsonapi_conformance(monkeypatch):
    """Every Flask app's test_client() is a ConformingClient during each test."""
    monkeypatch.setattr(Flask, "test_client_class", ConformingClient)
