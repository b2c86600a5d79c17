"""The api-keys resource: who may do what (one matrix), the secret shown once, listing, lifecycle."""
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import event

from app.extensions import db
from app.models import ApiKey, User
from app.models.types import utcnow
from app.services.key_format import is_well_formed

# The key helpers are in tests/helpers.py; test_cli, test_api_key_validation and test_scope_rules
# still import some of them from here.
from tests.helpers import (  # noqa: F401
    JSONAPI,
    KEY_RE,
    UserRef,
    assert_error,
    bearer,
    call,
    create_key,
    dump_database,
    key_count,
    key_header,
    listed_ids,
    patch_key,
    register_secret,
    resource,
)

MISSING = 987654


def resources(response):
    data = response.get_json()["data"]
    return data if isinstance(data, list) else [data]


# --- the permission matrix ------------------------------------------------------------------------

@dataclass(frozen=True)
class Ids:
    key: int
    user: int
    stranger: int


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # {key}: the target key, {user}: its owner
    body: Callable[[Ids], dict] | None = None
    allowed: tuple = (200, None)  # the answer to the owner, an admin and a key with the scope
    for_others: tuple = (404, None)  # the answer to another (non-admin) user
    for_keys: tuple | None = None  # the answer to a key with the scope, when not `allowed`
    target_status: str = "active"

    @property
    def scope(self):
        return "keys:read" if self.method == "GET" else "keys:write"

    def send(self, client, headers, ids):
        url = self.path.format(key=ids.key, user=ids.user)
        return call(client, self.method, url, headers, self.body(ids) if self.body else None)


def _key_links(ids):
    return {"data": [{"type": "api-keys", "id": str(ids.key)}]}


REFUSED = (403, "OWNER_IMMUTABLE")
ENDPOINTS = {
    "get-key": Endpoint("GET", "/v1/api-keys/{key}"),
    "patch-key": Endpoint("PATCH", "/v1/api-keys/{key}",
                          lambda ids: resource("api-keys", {"name": "renamed"}, id_=ids.key)),
    "delete-key": Endpoint("DELETE", "/v1/api-keys/{key}"),
    "get-key-owner": Endpoint("GET", "/v1/api-keys/{key}/relationships/user"),
    "patch-key-owner": Endpoint("PATCH", "/v1/api-keys/{key}/relationships/user",
                                lambda ids: {"data": {"type": "users", "id": str(ids.stranger)}}, allowed=REFUSED),
    "list-user-keys": Endpoint("GET", "/v1/users/{user}/api-keys"),
    "get-user-key-links": Endpoint("GET", "/v1/users/{user}/relationships/api-keys"),
    "post-user-key-links": Endpoint("POST", "/v1/users/{user}/relationships/api-keys", _key_links, allowed=REFUSED),
    "patch-user-key-links": Endpoint("PATCH", "/v1/users/{user}/relationships/api-keys", _key_links, allowed=REFUSED),
    "delete-user-key-links": Endpoint("DELETE", "/v1/users/{user}/relationships/api-keys", _key_links, allowed=REFUSED),
    "revoke": Endpoint("POST", "/v1/api-keys/{key}/revoke"),
    "suspend": Endpoint("POST", "/v1/api-keys/{key}/suspend"),
    "reactivate": Endpoint("POST", "/v1/api-keys/{key}/reactivate", target_status="suspended",
                           for_keys=(403, "SESSION_REQUIRED")),
    "rotate": Endpoint("POST", "/v1/api-keys/{key}/rotate", allowed=(201, None)),
    "create-for-user": Endpoint(
        "POST", "/v1/api-keys",
        lambda ids: resource("api-keys", {"name": "new"},
                             relationships={"user": {"data": {"type": "users", "id": str(ids.user)}}}),
        allowed=(201, None), for_others=(403, "ADMIN_REQUIRED")),
}
ACTORS = ("owner", "other-user", "admin", "anonymous", "key-with-scope", "key-without-scope", "revoked-key")


def expected(endpoint, actor):
    fixed = {"anonymous": (401, "UNAUTHENTICATED"), "revoked-key": (401, "REVOKED"),
             "key-without-scope": (403, "INSUFFICIENT_SCOPES"), "other-user": endpoint.for_others,
             "key-with-scope": endpoint.for_keys or endpoint.allowed}
    return fixed.get(actor, endpoint.allowed)


def actor_headers(make, actor, owner, stranger, admin, scope):
    other_scope = "keys:write" if scope == "keys:read" else "keys:read"
    builders = {
        "owner": lambda: make.headers(owner),
        "other-user": lambda: make.headers(stranger),
        "admin": lambda: make.headers(admin),
        "anonymous": lambda: {},
        "key-with-scope": lambda: bearer(make.key(owner, scopes=[scope]).secret),
        "key-without-scope": lambda: key_header(make.key(owner, scopes=[other_scope]).secret),
        "revoked-key": lambda: key_header(make.key(owner, scopes=["keys:read", "keys:write"], status="revoked").secret),
    }
    return builders[actor]()


@pytest.mark.parametrize("endpoint_name, actor",
                         [pytest.param(name, actor, id=f"{name}-{actor}") for name in ENDPOINTS for actor in ACTORS])
def test_permission_matrix(app, client, make, secrets_seen, endpoint_name, actor):
    endpoint = ENDPOINTS[endpoint_name]
    owner, stranger, admin = make.user(), make.user(), make.user(admin=True)
    target = make.key(owner, scopes=[], status=endpoint.target_status)
    headers = actor_headers(make, actor, owner, stranger, admin, endpoint.scope)
    ids = Ids(target.id, owner.id, stranger.id)

    def snapshot():
        return make.row(ApiKey, target.id), key_count(app, owner.id)

    before = snapshot()
    response = endpoint.send(client, headers, ids)
    register_secret(response, secrets_seen)
    status, code = expected(endpoint, actor)
    if status >= 400:
        assert_error(response, status, code=code)
        assert snapshot() == before, "a refused request changed the key"
    else:
        assert response.status_code == status, response.get_data(as_text=True)
        assert (snapshot() != before) == (endpoint.method != "GET")
    if status == 404:  # another user's key or account: exactly like a missing one
        missing = endpoint.send(client, headers, Ids(MISSING, MISSING, stranger.id))
        assert missing.status_code == 404
        assert missing.get_json() == response.get_json()


def test_lists_show_own_keys_and_admins_see_all(client, make):
    alice, bob, admin = make.user(), make.user(), make.user(admin=True)
    alice_keys = {make.key(alice).id for _ in range(3)}
    bob_keys = {make.key(bob).id for _ in range(2)}
    alice_key = make.key(alice, scopes=["keys:read"])

    assert listed_ids(client, make.headers(alice)) == alice_keys | {alice_key.id}
    assert listed_ids(client, make.headers(bob)) == bob_keys
    assert listed_ids(client, key_header(alice_key.secret)) == alice_keys | {alice_key.id}
    assert listed_ids(client, make.headers(admin)) == alice_keys | bob_keys | {alice_key.id}
    assert listed_ids(client, make.headers(admin), f"/v1/users/{bob.id}/api-keys") == bob_keys


# --- the secret ----------------------------------------------------------------------------------

def test_secret_is_in_the_201_only_and_never_stored(app, client, make, secrets_seen):
    owner = make.user()
    headers = make.headers(owner)
    created = create_key(client, headers, secrets_seen, scopes=["keys:read"])
    assert created.status_code == 201, created.get_data(as_text=True)
    attributes, key_id = created.get_json()["data"]["attributes"], created.get_json()["data"]["id"]
    secret = attributes["secret"]
    assert KEY_RE.match(secret) and is_well_formed(secret, "lk")
    assert (attributes["start"], attributes["last4"]) == (secret[:9], secret[-4:])

    rotated = call(client, "POST", f"/v1/api-keys/{key_id}/rotate", headers)
    new_secret = register_secret(rotated, secrets_seen)
    assert rotated.status_code == 201 and KEY_RE.match(new_secret) and new_secret != secret

    later = [
        client.get(f"/v1/api-keys/{key_id}", headers=headers),
        client.get("/v1/api-keys", headers=headers, query_string={"include": "user"}),
        client.get(f"/v1/users/{owner.id}/api-keys", headers=headers),
        client.get("/v1/api-keys", headers=key_header(new_secret)),
        client.get(f"/v1/api-keys/{key_id}/relationships/user", headers=headers),
        call(client, "POST", f"/v1/api-keys/{key_id}/suspend", headers),
        call(client, "POST", f"/v1/api-keys/{key_id}/reactivate", headers),
        patch_key(client, headers, key_id, {"name": "renamed"}),
        call(client, "POST", f"/v1/api-keys/{key_id}/revoke", headers),
    ]
    for response in later:
        assert response.status_code == 200, response.get_data(as_text=True)
        text = response.get_data(as_text=True)
        assert secret not in text and new_secret not in text
        assert all("secret" not in item.get("attributes", {}) for item in resources(response))
    dump = dump_database(app)
    for value in (secret, new_secret):
        assert value not in dump and value[3:] not in dump, "a secret is recoverable from the database"


# --- lifecycle through PATCH and the actions -----------------------------------------------------

@pytest.mark.parametrize("stamp", ["2001-02-03T04:05:06+00:00", "2999-01-01T00:00:00+00:00"])
def test_patch_revoked_at_revokes_the_key(client, make, stamp):
    owner = make.user()
    key = make.key(owner)
    response = patch_key(client, make.headers(owner), key.id, {"revoked-at": stamp})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["data"]["attributes"]["status"] == "revoked"
    assert make.row(ApiKey, key.id)["status"] == "revoked"
    assert_error(client.get("/v1/api-keys", headers=key_header(key.secret)), 401, code="REVOKED")


@pytest.mark.parametrize("attributes", [{"name": "renamed"}, {"revoked-at": "2030-01-01T00:00:00+00:00"},
                                        {"scopes": ["keys:read"]}])
def test_a_revoked_key_cannot_be_patched(client, make, attributes):
    owner = make.user()
    key = make.key(owner, status="revoked", revoked_at=utcnow())
    before = make.row(ApiKey, key.id)
    assert_error(patch_key(client, make.headers(owner), key.id, attributes), 409)
    assert make.row(ApiKey, key.id) == before


@pytest.mark.parametrize("status, action", [
    ("revoked", "revoke"), ("revoked", "suspend"), ("revoked", "reactivate"), ("revoked", "rotate"),
    ("active", "reactivate"), ("suspended", "suspend"),
])
def test_actions_that_do_not_fit_the_state_are_409(client, make, status, action):
    owner = make.user()
    key = make.key(owner, status=status)
    before = make.row(ApiKey, key.id)
    response = call(client, "POST", f"/v1/api-keys/{key.id}/{action}", make.headers(owner))
    assert_error(response, 409, code="INVALID_KEY_STATE")
    assert make.row(ApiKey, key.id) == before


@pytest.mark.parametrize("action, status", [("revoke", "revoked"), ("suspend", "suspended")])
def test_actions_change_the_status(client, make, action, status):
    owner = make.user()
    key = make.key(owner)
    response = call(client, "POST", f"/v1/api-keys/{key.id}/{action}", make.headers(owner))
    assert response.status_code == 200
    assert response.get_json()["data"]["attributes"]["status"] == status
    assert make.row(ApiKey, key.id)["status"] == status


# --- listing --------------------------------------------------------------------------------------

@pytest.fixture
def owner_with_keys(make):
    """alpha..echo in every state, created in that order; and a key of someone else."""
    owner, now = make.user(), utcnow()
    make.key(owner, name="alpha", tags=["ci", "prod"], description="deploys the site")
    make.key(owner, name="bravo", tags=["prod"], status="suspended")
    make.key(owner, name="charlie", status="revoked")
    make.key(owner, name="delta", expires_at=now - timedelta(days=1))
    make.key(owner, name="echo", expires_at=now + timedelta(days=1))
    make.key(make.user(), name="foreign", tags=["prod"])
    return owner


def _filter(*nodes):
    return json.dumps(list(nodes))


NOW = "{now}"  # replaced by the current time in the test
ALL = ["alpha", "bravo", "charlie", "delta", "echo"]

LIST_CASES = [
    ({"filter[status]": "active"}, ["alpha", "echo"]),
    ({"filter[status]": "suspended"}, ["bravo"]),
    ({"filter[status]": "revoked"}, ["charlie"]),
    ({"filter[status]": "expired"}, ["delta"]),
    ({"filter[tag]": "prod"}, ["alpha", "bravo"]),
    ({"filter[tag]": "pro"}, []),
    ({"filter[name]": "bravo"}, ["bravo"]),
    ({"sort": "name"}, ALL),
    ({"sort": "-name"}, ALL[::-1]),
    ({"sort": "-created-at"}, ALL[::-1]),
    ({"page[size]": "2"}, ["alpha", "bravo"]),
    ({"page[size]": "2", "page[number]": "3"}, ["echo"]),
    ({"filter": _filter({"name": "name", "op": "eq", "val": "bravo"})}, ["bravo"]),
    ({"filter": _filter({"name": "description", "op": "ilike", "val": "%deploys%"})}, ["alpha"]),
    ({"filter": _filter({"or": [{"name": "name", "op": "eq", "val": "alpha"},
                                {"name": "name", "op": "eq", "val": "echo"}]})}, ["alpha", "echo"]),
    ({"filter": _filter({"name": "expires-at", "op": "lt", "val": NOW})}, ["delta"]),
    ({"filter": _filter({"name": "expires_at", "op": "gt", "val": NOW})}, ["echo"]),
    ({"filter": _filter({"name": "created-at", "op": "le", "val": NOW},
                        {"name": "last-used-at", "op": "is_", "val": None})}, ALL),
]


@pytest.mark.parametrize("query, names", LIST_CASES)
def test_list_filters_sorting_and_pages(client, make, owner_with_keys, query, names):
    query = {name: value.replace(NOW, utcnow().isoformat()) for name, value in query.items()}
    response = client.get("/v1/api-keys", headers=make.headers(owner_with_keys), query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert [item["attributes"]["name"] for item in response.get_json()["data"]] == names


def test_sparse_fieldsets(client, make, owner_with_keys):
    response = client.get("/v1/api-keys", headers=make.headers(owner_with_keys),
                          query_string={"fields[api-keys]": "name,status"})
    assert response.status_code == 200
    assert {tuple(sorted(item["attributes"])) for item in response.get_json()["data"]} == {("name", "status")}


BAD_QUERIES = [
    pytest.param({"filter[status]": "deleted"}, id="unknown-status"),
    pytest.param({"page[size]": "101"}, id="page-too-big"),
    pytest.param({"sort": "digest"}, id="sort-digest"),
    pytest.param({"filter[digest]": "abc"}, id="filter-digest"),
    pytest.param({"filter": _filter({"name": "digest", "op": "eq", "val": "x"})}, id="json-digest"),
    pytest.param({"filter": _filter({"name": "user-id", "op": "eq", "val": 1})}, id="json-user"),
    pytest.param({"filter": _filter({"name": "scopes", "op": "like", "val": "%admin%"})}, id="json-scopes"),
    pytest.param({"filter": _filter({"name": "status", "op": "eq", "val": "active"})}, id="json-status"),
    pytest.param({"filter": _filter({"name": "user", "op": "has", "val": {"name": "email", "op": "eq", "val": "x"}})},
                 id="json-relationship"),
    pytest.param({"filter": _filter({"name": "name", "op": "__eq__", "val": "x"})}, id="json-unsafe-op"),
    pytest.param({"filter": _filter({"or": [{"name": "digest", "op": "eq", "val": "x"}]})}, id="json-nested-or"),
    pytest.param({"filter": _filter({"not": {"name": "digest", "op": "eq", "val": "x"}})}, id="json-nested-not"),
    pytest.param({"filter": "name=alpha"}, id="json-not-json"),
    pytest.param({"filter": _filter({"name": "expires-at", "op": "lt", "val": "soon"})}, id="json-not-a-date"),
    pytest.param({"filter": _filter({"name": "name", "op": "ne", "field": "digest"})}, id="json-field-digest"),
    pytest.param({"filter": _filter({"name": "name", "op": "eq", "field": "effective_status"})},
                 id="json-field-method"),
    pytest.param({"filter": _filter({"name": "name", "op": "in_", "val": "alpha"})}, id="json-in-a-string"),
    pytest.param({"filter": _filter({"name": "created_at", "op": "between", "val": ["2000-01-01T00:00:00+00:00"]})},
                 id="json-between-one-value"),
    pytest.param({"filter": _filter({"name": "last_used_at", "op": "eq", "val": 5})}, id="json-date-a-number"),
    pytest.param({"filter": _filter({"name": "name", "op": "like", "val": 5})}, id="json-like-a-number"),
    pytest.param({"filter": _filter({"name": "name", "op": "eq", "val": ["a", "b"]})}, id="json-eq-a-list"),
]


@pytest.mark.parametrize("query", BAD_QUERIES)
def test_bad_list_queries_are_400(client, make, owner_with_keys, query):
    assert_error(client.get("/v1/api-keys", headers=make.headers(owner_with_keys), query_string=query), 400)


# --- query count ----------------------------------------------------------------------------------

def count_statements(app, request):
    """Return (response, number of SQL statements) for `request()`."""
    statements = []

    def count(*args):
        statements.append(args[2])

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", count)
        try:
            response = request()
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
    return response, len(statements)


def bulk_users(app, number):
    """`number` plain users straight into the database (no password hashing: they never log in)."""
    with app.app_context():
        users = [User(email=f"bulk-{uuid.uuid4().hex}@example.com", password_hash="-") for _ in range(number)]
        db.session.add_all(users)
        db.session.commit()
        return [UserRef(user.id, user.email, False) for user in users]


@pytest.mark.parametrize("viewer, query", [("owner", {}), ("admin", {}), ("admin", {"include": "user"})])
def test_listing_100_keys_costs_the_same_queries_as_5(app, client, make, viewer, query):
    """The owner's own keys, and an admin's view of keys that each have another owner."""
    admin = make.user(admin=True)

    def statements_for(number):
        tag = f"round-{number}"
        owners = bulk_users(app, number) if viewer == "admin" else [make.user()] * number
        for index, owner in enumerate(owners):
            make.key(owner, name=f"key {index}", tags=[tag], quota_limit=10, quota_period="day")
        headers = make.headers(admin if viewer == "admin" else owners[0])
        params = {"page[size]": 100, "filter[tag]": tag, **query}
        response, count = count_statements(app, lambda: client.get("/v1/api-keys", headers=headers,
                                                                    query_string=params))
        assert response.status_code == 200 and len(response.get_json()["data"]) == number
        return count

    assert statements_for(100) == statements_for(5)
