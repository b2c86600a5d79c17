"""The conformance hook (tests/jsonapi_conformance.py) itself: it must be able to fail."""
import json

import pytest
from flask import Response

from tests.jsonapi_conformance import JSONAPI, nonconformity

GOOD = {"data": {"type": "api-keys", "id": "1", "links": {"self": "http://localhost/v1/api-keys/1"}}}


def answer(document, content_type=JSONAPI):
    return Response(json.dumps(document), content_type=content_type)


def test_a_conforming_document_passes():
    assert nonconformity(answer(GOOD)) is None
    assert nonconformity(answer({"nonsense": True}, "application/json")) is None  # not ours to judge


@pytest.mark.parametrize("document, content_type, why", [
    ({"data": {"type": "api-keys"}}, JSONAPI, "'id' is a required property"),
    ({"data": None, "errors": []}, JSONAPI, ""),
    (GOOD, JSONAPI + "; charset=utf-8", "media type parameters"),
    ({"data": {**GOOD["data"], "links": {"self": "/v1/api-keys/1"}}}, JSONAPI, "relative link at /data/links/self"),
    ({"data": {**GOOD["data"], "relationships": {"user": {"links": {"related": {"href": "/v1/users/1"}}}}}},
     JSONAPI, "relative link at /data/relationships/user/links/related"),
])
def test_a_nonconforming_answer_is_named(document, content_type, why):
    problem = nonconformity(answer(document, content_type))
    assert problem is not None and why in problem
