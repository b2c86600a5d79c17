"""Content negotiation, as JSON:API 1.0 asks, on every route family: 415 for its media type with
parameters in Content-Type, 406 for an Accept that lists it only with parameters (a `q` weight is
not one), and everything else a client may send served; plain application/json where documented.

The verification route runs through the fast path here; tests/test_verify_fast_path.py compares
both doors on these cases.
"""
import json

import pytest

from tests.helpers import JSONAPI, PASSWORD, assert_error, resource


def _session(make):
    return make.headers(make.user(admin=True))


def _key(make):
    return make.key(make.user(), scopes=["keys:read", "keys:write"])


def _update(make):
    key = _key(make)
    return ("PATCH", f"/v1/api-keys/{key.id}", {"X-API-Key": key.secret},
            resource("api-keys", {"name": "renamed"}, id_=key.id), 200)


def _relationship(make):
    key = _key(make)
    return "GET", f"/v1/api-keys/{key.id}/relationships/user", {"X-API-Key": key.secret}, None, 200


def _action(make):
    key = _key(make)
    return "POST", f"/v1/api-keys/{key.id}/suspend", {"X-API-Key": key.secret}, None, 200


def _verify(make):
    service = make.key(make.user(admin=True), scopes=["keys:verify"])
    return "POST", "/v1/api-keys/verify", {"X-API-Key": service.secret}, {"key": make.key(make.user()).secret}, 200


# name: make -> (method, path, headers, body or None, status when served)
ROUTES = {
    "resource list": lambda make: ("GET", "/v1/api-keys", _session(make), None, 200),
    "resource create": lambda make: ("POST", "/v1/api-keys", _session(make), resource("api-keys", {"name": "k"}),
                                     201),
    "resource update": _update,
    "relationship": _relationship,
    "action": _action,
    "auth": lambda make: ("POST", "/v1/auth/login", {}, {"email": make.user().email, "password": PASSWORD}, 200),
    "usage": lambda make: ("GET", "/v1/usage", _session(make), None, 200),
    "scopes": lambda make: ("GET", "/v1/scopes", {}, None, 200),
    "verify": _verify,
}
WITH_BODY = [name for name in ROUTES if name in ("resource create", "resource update", "auth", "verify")]


def send(client, make, route, content_type=JSONAPI, accept=None):
    """Send the route's request with these headers; return (response, the status when served)."""
    method, path, headers, body, status = ROUTES[route](make)
    headers = {**headers, **({"Accept": accept} if accept is not None else {})}
    if content_type is not None:
        headers["Content-Type"] = content_type  # on a request without a body too: it is judged all the same
    response = client.open(path, method=method, headers=headers, data=json.dumps(body) if body is not None else None)
    if response.status_code == 201:
        make.secrets.add(response.get_json()["data"]["attributes"]["secret"])
    if route == "auth" and response.status_code == 200:
        meta = response.get_json()["meta"]
        make.secrets.add(meta["access_token"], meta["refresh_token"])
    return response, status


@pytest.mark.parametrize("parameters", ["; charset=utf-8", ';ext="https://jsonapi.org/ext/atomic"',
                                        "; profile=x; charset=utf-8"])
@pytest.mark.parametrize("route", ROUTES)
def test_the_jsonapi_media_type_with_parameters_is_415(client, make, route, parameters):
    response, _ = send(client, make, route, content_type=JSONAPI + parameters)
    assert_error(response, 415)


@pytest.mark.parametrize("accept", [f"{JSONAPI}; charset=utf-8", f"{JSONAPI};ext=x, {JSONAPI}; profile=y",
                                    f"{JSONAPI}; ext=x, */*", f"{JSONAPI};ext=x;q=0.9"])
@pytest.mark.parametrize("route", ROUTES)
def test_an_accept_with_the_jsonapi_media_type_only_with_parameters_is_406(client, make, route, accept):
    response, _ = send(client, make, route, accept=accept)
    assert_error(response, 406)


@pytest.mark.parametrize("accept", [None, "*/*", JSONAPI, f"{JSONAPI};q=0.9, */*;q=0.1", f"{JSONAPI}; q=0",
                                    f"{JSONAPI}; charset=x, {JSONAPI}", f"{JSONAPI};q=0.5;ext=x",
                                    "application/json", "text/html, application/*"])
@pytest.mark.parametrize("route", ROUTES)
def test_an_accept_the_api_can_answer_is_served(client, make, route, accept):
    response, status = send(client, make, route, accept=accept)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == JSONAPI


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "APPLICATION/JSON",
                                          f"{JSONAPI};", "application/vnd.API+json"])
@pytest.mark.parametrize("route", ["auth", "verify", "resource create"])
def test_json_without_jsonapi_parameters_is_served(client, make, route, content_type):
    response, status = send(client, make, route, content_type=content_type)
    assert response.status_code == status, response.get_data(as_text=True)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
@pytest.mark.parametrize("route", WITH_BODY)
def test_a_body_that_is_not_json_is_415(client, make, route, content_type):
    response, _ = send(client, make, route, content_type=content_type)
    assert_error(response, 415)


@pytest.mark.parametrize("route", ["resource list", "usage", "scopes"])
def test_a_request_without_a_body_needs_no_content_type(client, make, route):
    response, status = send(client, make, route, content_type=None)
    assert response.status_code == status, response.get_data(as_text=True)


def test_media_types_are_judged_before_credentials(client):
    assert_error(client.post("/v1/api-keys", data="{}", content_type=f"{JSONAPI}; charset=utf-8"), 415)
    assert_error(client.get("/v1/api-keys", headers={"Accept": f"{JSONAPI}; ext=x"}), 406)


# --- no content, no content type --------------------------------------------------------------------

def test_a_204_carries_no_content_type(app, client, make):
    """A 204 has no content to type (RFC 9110): logout and logout-all, and any 204 the app answers
    (its response class drops the type; Flask would say text/html)."""
    owner = make.user()
    answers = [client.post("/v1/auth/logout", headers=make.headers(owner)),
               client.post("/v1/auth/logout-all", headers=make.headers(owner))]
    for answer in answers:
        assert answer.status_code == 204, answer.get_data(as_text=True)
        assert "Content-Type" not in answer.headers and answer.data == b""
    with app.test_request_context() as context:
        response = app.make_response(("", 204, {"Content-Type": JSONAPI}))
        assert "Content-Type" not in response.get_wsgi_headers(context.request.environ)
