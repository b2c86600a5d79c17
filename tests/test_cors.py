"""CORS for browser pages (CORS_ORIGINS): what a page's script may read, what preflights are told,
and that preflights cost the caller nothing. The same flow in a real browser: tests/test_browser.py."""
import pytest

from app.api.helpers.cors import EXPOSED_HEADERS
from tests.helpers import key_header, resource

ORIGIN = "https://console.example.com"


@pytest.fixture
def config_overrides():
    return {"CORS_ORIGINS": [ORIGIN], "RATE_LIMIT_DEFAULTS": "2 per minute"}


def preflight(client, path, method, headers="authorization, content-type"):
    return client.options(path, headers={"Origin": ORIGIN, "Access-Control-Request-Method": method,
                                         "Access-Control-Request-Headers": headers})


@pytest.mark.parametrize("path, methods", [
    ("/v1/api-keys", "GET, POST"),
    ("/v1/api-keys/7", "DELETE, GET, PATCH"),
    ("/v1/api-keys/7/revoke", "POST"),
    ("/v1/api-keys/verify", "POST"),
    ("/v1/audit-events", "GET"),
    ("/v1/users/7/api-keys", "GET"),  # the route of /v1/api-keys, whose POST is refused here
])
def test_a_preflight_is_told_the_methods_of_the_path_only(client, path, methods):
    response = preflight(client, path, "GET")
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Access-Control-Allow-Methods"] == methods
    assert response.headers["Access-Control-Max-Age"] == "600"
    assert response.headers["Access-Control-Allow-Headers"] == "authorization, content-type"


@pytest.mark.parametrize("path", ["/v1/api-keys", "/v1/users/{user}/api-keys", "/v1/api-keys/{key}",
                                  "/v1/api-keys/{key}/revoke", "/v1/users/{user}/relationships/api-keys"])
def test_a_preflight_names_the_methods_a_405_allows(client, make, path):
    """One list of a path's methods for browsers and for a 405's Allow (errors.served_methods)."""
    owner = make.user(admin=True)
    path = path.format(user=owner.id, key=make.key(owner).id)
    allowed = set(preflight(client, path, "GET").headers["Access-Control-Allow-Methods"].split(", "))
    for method in ("GET", "POST", "PATCH", "DELETE"):
        response = client.open(path, method=method, headers={**make.headers(owner), "Origin": ORIGIN},
                               json=resource("api-keys", {"name": "x"}))
        assert (response.status_code != 405) == (method in allowed), (method, response.status_code)
        if response.status_code == 405:
            assert set(response.headers["Allow"].split(", ")) - {"HEAD", "OPTIONS"} == allowed, method


def test_another_origin_gets_no_cors_headers(client):
    response = client.options("/v1/api-keys", headers={"Origin": "https://evil.example",
                                                       "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Methods" not in response.headers


def test_preflights_cost_no_rate_limit_and_no_quota(client, make):
    """Two requests a minute: ten preflights in between leave the second one served."""
    secret = make.key(make.user(), quota_limit=2, quota_period="day").secret
    first = client.get("/v1/api-keys", headers={**key_header(secret), "Origin": ORIGIN})
    for _ in range(10):
        response = client.options("/v1/api-keys", headers={**key_header(secret), "Origin": ORIGIN,
                                                           "Access-Control-Request-Method": "GET"})
        assert response.status_code == 200 and "X-RateLimit-Remaining" not in response.headers
    second = client.get("/v1/api-keys", headers={**key_header(secret), "Origin": ORIGIN})
    assert first.status_code == second.status_code == 200, second.get_data(as_text=True)
    assert second.headers["X-RateLimit-Remaining"] == "0" and second.headers["X-Quota-Remaining"] == "0"


def test_every_limit_header_a_response_carries_is_exposed(client, make):
    """The names come from flask-limiter and helpers/ratelimit.py: a header added there and not
    to EXPOSED_HEADERS is invisible to a page's script."""
    secret = make.key(make.user(), quota_limit=1, quota_period="day").secret
    client.get("/v1/api-keys", headers={**key_header(secret), "Origin": ORIGIN})
    refused = client.get("/v1/api-keys", headers={**key_header(secret), "Origin": ORIGIN})
    assert refused.status_code == 429
    exposed = {name.strip() for name in refused.headers["Access-Control-Expose-Headers"].split(",")}
    assert exposed == set(EXPOSED_HEADERS)
    carried = {name for name, _ in refused.headers if name.startswith(("X-", "Retry-After"))}
    assert carried and carried <= exposed, carried - exposed
