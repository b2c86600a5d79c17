"""The OpenAPI document (GET /v1/openapi.json) and its viewer (/docs/).

Product map: the document is generated from the app that serves it, so it is valid OpenAPI 3.1,
names every route of the app with each of its methods (but those UNDESCRIBED names), and takes its
resource types from the schemas; it
is public, but answered through the same request hooks as every /v1 route. The viewer is Swagger
UI from the flask-swagger-ui package, every asset served from here. What the server answers, route
by route, is held to the document by tests/test_schemathesis.py.
"""
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from openapi_spec_validator import validate

from app.api import api, bp
from app.api.openapi import AUTOMATIC, MEDIA_TYPE
from app.models import ApiKey
from tests.helpers import JSONAPI, assert_error, create_key

_PARAMETER = re.compile(r"<(?:[^:>]+:)?([^>]+)>")
# Routes of the app the document does not describe, each with its reason (path prefix -> reason).
UNDESCRIBED = {
    "/llm/v1/": "the LLM gateway speaks OpenAI's API, not JSON:API: OpenAI's own API reference describes it",
    "/docs": "the viewer of this document, pages for people",
    "/console": "the browser console's page and static files",
}


@pytest.fixture
def document(client):
    response = client.get("/v1/openapi.json")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == MEDIA_TYPE
    return response.get_json(force=True)


def described_operations(app):
    """(OpenAPI path, method) of every route of the app but those UNDESCRIBED, without Flask's
    automatic HEAD and OPTIONS."""
    return {(_PARAMETER.sub(r"{\1}", rule.rule), method.lower())
            for rule in app.url_map.iter_rules() if not rule.rule.startswith(tuple(UNDESCRIBED))
            for method in rule.methods - AUTOMATIC}


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1.")
    validate(document)


def test_every_route_is_documented_with_each_of_its_methods(app, document):
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert documented == described_operations(app)
    assert len(documented) > 30  # not vacuous: resources, relationships, actions, auth, usage, verify
    assert {("/.well-known/jwks.json", "get"), ("/healthz", "get"), ("/readyz", "get")} <= documented
    undescribed = {rule.rule for rule in app.url_map.iter_rules() if rule.rule.startswith(tuple(UNDESCRIBED))}
    assert {prefix for prefix in UNDESCRIBED if any(rule.startswith(prefix) for rule in undescribed)} == set(
        UNDESCRIBED)  # each exclusion still excludes a route


def test_the_routes_outside_v1_are_public_plain_json(client, document):
    """The JWKS and the probes: what they answer is what the document says (schemathesis checks
    their bodies against the schemas)."""
    for path in ("/.well-known/jwks.json", "/healthz", "/readyz"):
        operation = document["paths"][path]["get"]
        assert operation["security"] == [], path
        assert list(operation["responses"]["200"]["content"]) == ["application/json"], path
        assert client.get(path).mimetype == "application/json", path
    key = document["paths"]["/.well-known/jwks.json"]["get"]["responses"]["200"]["content"]["application/json"]
    assert key["schema"]["properties"]["keys"]["items"]["properties"]["alg"] == {"const": "EdDSA"}
    assert document["paths"]["/readyz"]["get"]["responses"]["503"]["content"]["application/json"]


def test_operation_ids_are_unique(document):
    ids = [operation["operationId"] for item in document["paths"].values() for operation in item.values()]
    assert len(ids) == len(set(ids))


def test_resource_types_come_from_the_schemas_that_serve_them(document):
    types = {schema["properties"]["type"].get("const") for schema in document["components"]["schemas"].values()
             if "type" in schema.get("properties", {})}
    served = {resource.schema.opts.type_ for resource in api.resource_registry}
    assert served and served <= types


def test_every_operation_answers_json_api_errors(document):
    for path, item in document["paths"].items():
        if not path.startswith(bp.url_prefix):
            continue  # plain JSON: the routes outside /v1 answer only their own errors
        for method, operation in item.items():
            errors = {status for status in operation["responses"] if status.startswith(("4", "5"))}
            assert {"400", "406", "429", "503"} <= errors, (method, path)
            if operation["security"]:
                assert {"401", "403"} <= errors, (method, path)
            if "{" in path:
                assert "404" in errors, (method, path)
            if "requestBody" in operation:
                assert {"413", "415", "422"} <= errors, (method, path)
    error = document["components"]["responses"]["NotFound"]["content"][JSONAPI]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorDocument"}


def test_security_schemes_are_a_session_and_a_key_in_either_header(document):
    schemes = document["components"]["securitySchemes"]
    assert schemes["session"] == {**schemes["session"], "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["apiKeyBearer"] == {**schemes["apiKeyBearer"], "type": "http", "scheme": "bearer"}
    keys = document["paths"]["/v1/api-keys"]["get"]["security"]
    assert {"apiKey": ["keys:read"]} in keys and {"session": []} in keys
    assert document["paths"]["/v1/scopes"]["get"]["security"] == []


def test_a_time_without_an_offset_is_stored_as_utc_as_the_document_says(client, make, document, secrets_seen):
    body = document["paths"]["/v1/api-keys"]["post"]["requestBody"]["content"][JSONAPI]["schema"]
    expires_at = body["properties"]["data"]["properties"]["attributes"]["properties"]["expires-at"]
    assert "without a UTC offset" in expires_at["description"] and "taken as UTC" in expires_at["description"]

    expiry = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    response = create_key(client, make.headers(make.user()), secrets_seen,
                          **{"expires-at": expiry.replace(tzinfo=None).isoformat()})
    assert response.status_code == 201, response.get_data(as_text=True)
    assert make.row(ApiKey, int(response.get_json()["data"]["id"]))["expires_at"] == expiry


def test_the_document_goes_through_the_v1_request_hooks(client, make):
    key = make.key(make.user())
    assert_error(client.get("/v1/openapi.json", query_string={"key": key.secret}), 400, "CREDENTIAL_IN_QUERY")
    assert_error(client.get("/v1/openapi.json", query_string={"unknown": "1"}), 400)


def test_the_document_is_public_and_the_same_each_time(client, make):
    anonymous = client.get("/v1/openapi.json")
    signed_in = client.get("/v1/openapi.json", headers=make.headers(make.user()))
    assert anonymous.status_code == signed_in.status_code == 200
    assert anonymous.data == signed_in.data


# --- the viewer -------------------------------------------------------------------------------------

class _Assets(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def test_docs_page_loads_only_local_assets(client):
    page = client.get("/docs/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    parser = _Assets()
    parser.feed(html)
    assert len(parser.urls) >= 4  # styles, icons, scripts
    for url in parser.urls:
        assert not re.match(r"^(https?:)?//", url), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.data) > 0, url
    assert not re.search(r"https?://", html)  # nor a validator, an OAuth redirect or a CDN in the config
    assert '"url": "/v1/openapi.json"' in html and '"validatorUrl": null' in html


def test_docs_without_the_slash_redirects_to_the_page(client):
    response = client.get("/docs")
    assert response.status_code in (301, 308)
    assert response.headers["Location"].endswith("/docs/")
