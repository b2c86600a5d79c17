"""A key as the credential: where it may be sent, why it is refused, what it may do, and how fast a
change through the API reaches the per-process key cache."""
from datetime import timedelta

import pytest

from app.models import ApiKey
from app.models.types import utcnow
from app.services.key_format import generate_key
from tests.helpers import (
    JSONAPI,
    assert_error,
    bearer,
    call,
    create_key,
    flush_usage,
    key_header,
    listed_ids,
    patch_key,
    register_secret,
)

LIST = "/v1/api-keys"


@pytest.mark.parametrize("send", [bearer, key_header, lambda secret: {"Authorization": f"bearer {secret}"}],
                         ids=["authorization-bearer", "x-api-key", "lowercase-bearer"])
def test_a_key_is_accepted_in_the_headers(client, make, send):
    owner = make.user()
    key = make.key(owner, scopes=["keys:read"])
    make.key(make.user())  # someone else's: the key acts as its owner
    assert listed_ids(client, send(key.secret)) == {key.id}


@pytest.mark.parametrize("parameter", ["api_key", "apikey", "key", "token", "access_token", "q"])
def test_a_key_in_the_query_string_is_refused(app, client, make, parameter):
    owner = make.user()
    key = make.key(owner, scopes=["keys:read"])
    response = client.get(LIST, headers=make.headers(owner), query_string={parameter: key.secret})
    assert_error(response, 400, code="CREDENTIAL_IN_QUERY")
    flush_usage(app)
    assert make.row(ApiKey, key.id)["last_used_at"] is None


# --- why a key is refused ------------------------------------------------------------------------

def _flip_last_char(secret):
    return secret[:-1] + ("A" if secret[-1] != "A" else "B")


PAST = timedelta(days=-1)
REFUSALS = {
    # name: (make the secret from (make, owner), status, code)
    "revoked": (lambda make, owner: make.key(owner, status="revoked").secret, 401, "REVOKED"),
    "suspended": (lambda make, owner: make.key(owner, status="suspended").secret, 401, "SUSPENDED"),
    "expired": (lambda make, owner: make.key(owner, expires_at=utcnow() + PAST).secret, 401, "EXPIRED"),
    "unknown": (lambda make, owner: generate_key("lk").secret, 401, "NOT_FOUND"),
    "bad-checksum": (lambda make, owner: _flip_last_char(make.key(owner).secret), 401, "NOT_FOUND"),
    "truncated": (lambda make, owner: make.key(owner).secret[:-1], 401, "NOT_FOUND"),
    "ip-not-allowed": (lambda make, owner: make.key(owner, allowed_ips=["10.0.0.0/8"]).secret, 403, "FORBIDDEN"),
    # the first failing check wins: NOT_FOUND, REVOKED, SUSPENDED, EXPIRED, FORBIDDEN
    "revoked-before-the-rest": (lambda make, owner: make.key(owner, status="revoked", expires_at=utcnow() + PAST,
                                                             allowed_ips=["10.0.0.0/8"]).secret, 401, "REVOKED"),
    "suspended-before-expired": (lambda make, owner: make.key(owner, status="suspended",
                                                              expires_at=utcnow() + PAST).secret, 401, "SUSPENDED"),
    "expired-before-ip": (lambda make, owner: make.key(owner, expires_at=utcnow() + PAST,
                                                       allowed_ips=["10.0.0.0/8"]).secret, 401, "EXPIRED"),
}


@pytest.mark.parametrize("send", [bearer, key_header], ids=["bearer", "x-api-key"])
@pytest.mark.parametrize("secret_of, status, code", REFUSALS.values(), ids=REFUSALS.keys())
def test_refused_keys(client, make, secrets_seen, send, secret_of, status, code):
    secret = secrets_seen.add(secret_of(make, make.user()))
    response = client.get(LIST, headers=send(secret))
    assert_error(response, status, code=code)
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("allowed_ips, address, status", [
    (["10.0.0.0/8"], "10.1.2.3", 200),
    (["10.0.0.0/8"], "127.0.0.1", 403),
    (["192.168.1.7"], "192.168.1.7", 200),
    (["192.168.1.7"], "192.168.1.8", 403),
    (["2001:db8::/32"], "2001:db8::1", 200),
    (["2001:db8::/32"], "2001:db9::1", 403),
    ([], "203.0.113.9", 200),
])
def test_allowed_ips(client, make, allowed_ips, address, status):
    key = make.key(make.user(), allowed_ips=allowed_ips)
    response = client.get(LIST, headers=key_header(key.secret), environ_base={"REMOTE_ADDR": address})
    assert response.status_code == status
    if status == 403:
        assert_error(response, 403, code="FORBIDDEN")


# --- what a key may do ---------------------------------------------------------------------------

@pytest.mark.parametrize("scopes, method, status", [
    (["keys:*"], "GET", 200), (["keys:*"], "POST", 201),
    (["*:read"], "GET", 200), (["*:read"], "POST", 403),
    (["keys:read"], "POST", 403), (["keys:write"], "GET", 403), ([], "GET", 403),
])
def test_wildcard_scopes_on_the_key_endpoints(client, make, secrets_seen, scopes, method, status):
    headers = key_header(make.key(make.user(), scopes=scopes).secret)
    response = create_key(client, headers, secrets_seen) if method == "POST" else client.get(LIST, headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)
    if status == 403:
        assert_error(response, 403, code="INSUFFICIENT_SCOPES")


@pytest.mark.parametrize("scopes, acts_as_admin", [
    (["keys:read", "keys:write"], False), (["keys:read", "keys:write", "admin:access"], True)])
def test_an_admin_key_acts_as_admin_only_with_admin_access(client, make, scopes, acts_as_admin):
    admin, user = make.user(admin=True), make.user()
    foreign = make.key(user)
    key = make.key(admin, scopes=scopes)
    headers = key_header(key.secret)
    assert client.get(f"{LIST}/{foreign.id}", headers=headers).status_code == (200 if acts_as_admin else 404)
    assert (foreign.id in listed_ids(client, headers)) == acts_as_admin
    response = call(client, "POST", f"{LIST}/{foreign.id}/suspend", headers)
    assert response.status_code == (200 if acts_as_admin else 404)
    assert make.row(ApiKey, foreign.id)["status"] == ("suspended" if acts_as_admin else "active")


def test_scopes_catalogue_is_public(client):
    response = client.get("/v1/scopes")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(JSONAPI)
    scopes = {item["id"]: item["attributes"]["admin-only"] for item in response.get_json()["data"]}
    assert {"keys:read", "keys:write", "keys:verify", "admin:access", "usage:read"} <= scopes.keys()
    assert {name for name, admin_only in scopes.items() if admin_only} == {"keys:verify", "admin:access"}


# --- last use, buffered --------------------------------------------------------------------------

def test_last_used_at_is_written_at_flush_not_per_request(app, client, make):
    owner = make.user()
    used, idle = make.key(owner), make.key(owner)
    before = utcnow()
    assert client.get(LIST, headers=key_header(used.secret)).status_code == 200
    assert client.get(LIST, headers=make.headers(owner)).status_code == 200
    assert make.row(ApiKey, used.id)["last_used_at"] is None, "written on the request path"
    flush_usage(app)
    assert before <= make.row(ApiKey, used.id)["last_used_at"] <= utcnow()
    assert make.row(ApiKey, idle.id)["last_used_at"] is None


# --- the key cache -------------------------------------------------------------------------------

CHANGES = {
    # name: (method, path, attributes or None, status, code) of the next request made with the key
    "revoke": ("POST", "/revoke", None, 401, "REVOKED"),
    "suspend": ("POST", "/suspend", None, 401, "SUSPENDED"),
    "rotate": ("POST", "/rotate", None, 401, "NOT_FOUND"),
    "delete": ("DELETE", "", None, 401, "NOT_FOUND"),
    "patch-revoked-at": ("PATCH", "", {"revoked-at": "2001-01-01T00:00:00+00:00"}, 401, "REVOKED"),
    "patch-scopes": ("PATCH", "", {"scopes": ["keys:write"]}, 403, "INSUFFICIENT_SCOPES"),
    "patch-allowed-ips": ("PATCH", "", {"allowed-ips": ["10.0.0.0/8"]}, 403, "FORBIDDEN"),
}


@pytest.mark.parametrize("config_overrides", [{"KEY_CACHE_SECONDS": 60}])  # only the clearing can help
@pytest.mark.parametrize("method, suffix, attributes, status, code", CHANGES.values(), ids=CHANGES.keys())
def test_a_change_through_the_api_applies_at_once(client, make, secrets_seen, method, suffix, attributes,
                                                   status, code):
    owner = make.user()
    key = make.key(owner, scopes=["keys:read"])
    assert client.get(LIST, headers=key_header(key.secret)).status_code == 200  # now cached
    if method == "PATCH":
        change = patch_key(client, make.headers(owner), key.id, attributes)
    else:
        change = call(client, method, f"{LIST}/{key.id}{suffix}", make.headers(owner))
    register_secret(change, secrets_seen)
    assert change.status_code in (200, 201), change.get_data(as_text=True)
    assert_error(client.get(LIST, headers=key_header(key.secret)), status, code=code)


@pytest.mark.parametrize("config_overrides", [{"KEY_CACHE_SECONDS": 30}])
def test_a_change_made_elsewhere_applies_within_the_cache_time(app, client, make, timeline):
    owner = make.user()
    key = make.key(owner, scopes=["keys:read"])
    assert client.get(LIST, headers=key_header(key.secret)).status_code == 200  # cached; log read at T
    # An operator revokes it from the CLI, another process: this process's cache is not told.
    assert app.test_cli_runner().invoke(args=["keys", "revoke", str(key.id)]).exit_code == 0
    assert client.get(LIST, headers=key_header(key.secret)).status_code == 200  # still cached
    timeline.advance(29.5)
    assert client.get(LIST, headers=key_header(key.secret)).status_code == 200  # still cached at T + 29.5 s
    timeline.advance(0.5)
    assert_error(client.get(LIST, headers=key_header(key.secret)), 401, code="REVOKED")  # at T + 30 s


@pytest.mark.parametrize("config_overrides", [{"KEY_CACHE_SECONDS": 60}])
def test_a_reactivated_key_works_at_once(client, make):
    owner = make.user()
    key = make.key(owner, scopes=["keys:read"], status="suspended")
    assert_error(client.get(LIST, headers=key_header(key.secret)), 401, code="SUSPENDED")  # now cached
    assert call(client, "POST", f"{LIST}/{key.id}/reactivate", make.headers(owner)).status_code == 200
    assert client.get(LIST, headers=key_header(key.secret)).status_code == 200


@pytest.mark.parametrize("prefix", ["", "LK", "lk_", "1k", "lk\n", "a" * 17])
def test_a_key_prefix_keys_could_not_carry_stops_the_service(prefix):
    from app import create_app
    from config import TestingConfig

    with pytest.raises(RuntimeError, match="API_KEY_PREFIX"):
        create_app(TestingConfig, API_KEY_PREFIX=prefix)


@pytest.mark.parametrize("prefix", ["lk", "a", "acme2", "a" * 16])
def test_a_valid_key_prefix_starts(prefix):
    from app import create_app
    from config import TestingConfig

    assert create_app(TestingConfig, API_KEY_PREFIX=prefix).config["API_KEY_PREFIX"] == prefix
