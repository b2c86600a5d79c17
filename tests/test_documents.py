"""Documents as JSON:API clients (kitsu, devour, jsonapi-client, jsonapi-requests) use them with
their defaults: plural types matching the paths, PATCHes that re-send what was fetched, audit
relationships, absolute links, and secrets never cached."""
import pytest

from app.models import ApiKey, User
from app.models.types import utcnow
from tests.helpers import PASSWORD, assert_error, call, create_key, patch_key, resource

HOST = "https://api.example.com"


def fetched(client, headers, path):
    """Return the resource at `path` as a client that re-sends it would hold it."""
    response = client.get(path, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["data"]


# --- types --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, type_", [
    ("/v1/api-keys", "api-keys"), ("/v1/users", "users"), ("/v1/audit-events", "audit-events"),
    ("/v1/scopes", "scopes"),
])
def test_a_collection_holds_resources_of_its_paths_type(client, make, path, type_):
    admin = make.user(admin=True)
    make.key(admin)
    client.post("/v1/auth/login", json={"email": admin.email, "password": PASSWORD})  # an audit event
    data = client.get(path, headers=make.headers(admin)).get_json()["data"]
    assert data and {item["type"] for item in data} == {type_}


def test_linkage_names_plural_types(client, make):
    owner = make.user()
    key = make.key(owner)
    headers = make.headers(owner)
    assert fetched(client, headers, f"/v1/api-keys/{key.id}")["relationships"]["user"]["data"] == {
        "type": "users", "id": str(owner.id)}
    linkage = client.get(f"/v1/users/{owner.id}/relationships/api-keys", headers=headers).get_json()["data"]
    assert linkage == [{"type": "api-keys", "id": str(key.id)}]


@pytest.mark.parametrize("method, path, type_", [
    ("POST", "/v1/api-keys", "api-key"), ("PATCH", "/v1/api-keys/{key}", "api-key"),
    ("PATCH", "/v1/users/{user}", "user"), ("POST", "/v1/api-keys/{key}/rotate", "api-key"),
])
def test_a_document_of_another_type_is_a_conflict(client, make, method, path, type_):
    owner = make.user()
    key = make.key(owner)
    before = make.row(ApiKey, key.id)
    body = resource(type_, {"name": "renamed"}, id_=None if method == "POST" else key.id)
    response = call(client, method, path.format(key=key.id, user=owner.id), make.headers(owner), body)
    assert_error(response, 409, pointer="/data/type")
    assert make.row(ApiKey, key.id) == before


@pytest.mark.parametrize("type_, status", [("sessions", 200), ("login", 409)])
def test_a_login_document_is_a_sessions_document(client, make, type_, status):
    user = make.user()
    body = resource(type_, {"email": user.email, "password": PASSWORD})
    assert client.post("/v1/auth/login", json=body).status_code == status


# --- PATCH re-sending what was fetched -----------------------------------------------------------

def test_a_key_patched_with_every_fetched_member_changes_only_what_differs(client, make):
    owner = make.user()
    key = make.key(owner, quota_limit=100, quota_period="day")
    headers = make.headers(owner)
    data = fetched(client, headers, f"/v1/api-keys/{key.id}")
    data["attributes"]["name"] = "renamed"
    data["attributes"]["created-at"] = data["attributes"]["created-at"].replace("+00:00", "Z")  # the same instant
    data["attributes"]["quota"]["used"] = 3  # what a client saw a moment ago: shown, never taken
    response = call(client, "PATCH", f"/v1/api-keys/{key.id}", headers, {"data": data})
    assert response.status_code == 200, response.get_data(as_text=True)
    after = make.row(ApiKey, key.id)
    assert (after["name"], after["quota_limit"], after["quota_period"]) == ("renamed", 100, "day")


def test_an_account_patched_with_every_fetched_attribute_needs_no_admin(client, make):
    user = make.user()
    headers = make.headers(user)
    data = fetched(client, headers, f"/v1/users/{user.id}")
    before = make.row(User, user.id)
    body = resource("users", data["attributes"], id_=user.id)  # is-admin: false, unchanged
    assert call(client, "PATCH", f"/v1/users/{user.id}", headers, body).status_code == 200
    assert make.row(User, user.id) == before


@pytest.mark.parametrize("name, value", [
    ("status", "revoked"), ("last4", "AAAA"), ("created-at", "2020-01-01T00:00:00+00:00"), ("suspended-at", None),
])
def test_a_changed_read_only_attribute_is_refused_as_read_only(client, make, name, value):
    owner = make.user()
    key = make.key(owner, status="suspended", suspended_at=utcnow())
    before = make.row(ApiKey, key.id)
    error = assert_error(patch_key(client, make.headers(owner), key.id, {"name": "renamed", name: value}), 422,
                         pointer=f"/data/attributes/{name}")
    assert error["detail"] == f"{name} is read-only."
    assert make.row(ApiKey, key.id) == before


def test_a_creation_with_a_read_only_attribute_is_refused_as_read_only(app, client, make, secrets_seen):
    owner = make.user()
    error = assert_error(create_key(client, make.headers(owner), secrets_seen, status="active"), 422,
                         pointer="/data/attributes/status")
    assert error["detail"] == "status is read-only."


@pytest.mark.parametrize("path", ["/v1/api-keys/{key}", "/v1/users/{user}"])
def test_a_patch_of_another_id_than_the_urls_is_a_conflict(client, make, path):
    owner = make.user()
    key = make.key(owner)
    other = make.key(owner) if "api-keys" in path else make.user()
    type_ = "api-keys" if "api-keys" in path else "users"
    body = resource(type_, {"name": "renamed"} if type_ == "api-keys" else {"is-admin": False}, id_=other.id)
    response = call(client, "PATCH", path.format(key=key.id, user=owner.id), make.headers(owner), body)
    assert_error(response, 409, pointer="/data/id")
    assert make.row(ApiKey, key.id)["name"] == "test key"



# --- audit events: who acted, on whose behalf, on what -------------------------------------------

def _suspend_as_admin(client, make):
    """An admin suspends an owner's key with a key of theirs: return (owner, admin, key id, admin key id)."""
    owner, admin = make.user(), make.user(admin=True)
    key = make.key(owner)
    admin_key = make.key(admin, scopes=["admin:access", "keys:read", "keys:write"])
    response = call(client, "POST", f"/v1/api-keys/{key.id}/suspend", {"X-API-Key": admin_key.secret})
    assert response.status_code == 200, response.get_data(as_text=True)
    return owner, admin, key.id, admin_key.id


def test_an_event_links_its_actor_key_subject_and_target(client, make):
    owner, admin, key_id, admin_key_id = _suspend_as_admin(client, make)
    event = client.get("/v1/audit-events", headers=make.headers(admin)).get_json()["data"][0]
    links = {name: relationship["data"] for name, relationship in event["relationships"].items()}
    assert links == {"actor": {"type": "users", "id": str(admin.id)},
                     "actor-key": {"type": "api-keys", "id": str(admin_key_id)},
                     "subject": {"type": "users", "id": str(owner.id)},
                     "target": {"type": "api-keys", "id": str(key_id)}}
    assert not {"actor-user-id", "actor-key-id", "subject-user-id", "target-id"} & set(event["attributes"])


def test_include_adds_the_rows_the_viewer_may_see(client, make):
    owner, admin, key_id, _ = _suspend_as_admin(client, make)
    query = {"include": "actor,subject,target"}
    seen_by_admin = client.get("/v1/audit-events", headers=make.headers(admin), query_string=query).get_json()
    assert {(item["type"], item["id"]) for item in seen_by_admin["included"]} == {
        ("users", str(admin.id)), ("users", str(owner.id)), ("api-keys", str(key_id))}
    seen_by_owner = client.get("/v1/audit-events", headers=make.headers(owner), query_string=query).get_json()
    assert seen_by_owner["data"][0]["relationships"]["actor"]["data"]["id"] == str(admin.id)
    assert {(item["type"], item["id"]) for item in seen_by_owner["included"]} == {
        ("users", str(owner.id)), ("api-keys", str(key_id))}  # never the administrator's account


@pytest.mark.parametrize("include, scopes, status", [
    ("subject", ["audit:read"], 403), ("subject", ["audit:read", "users:read"], 200),
    ("target", ["audit:read"], 403), ("target", ["audit:read", "keys:read"], 200),
])
def test_include_needs_the_scope_reading_the_included_type(client, make, include, scopes, status):
    owner = make.user()
    call(client, "POST", f"/v1/api-keys/{make.key(owner).id}/suspend", make.headers(owner))
    key = make.key(owner, scopes=scopes)
    response = client.get("/v1/audit-events", headers={"X-API-Key": key.secret}, query_string={"include": include})
    assert response.status_code == status, response.get_data(as_text=True)


def test_an_event_keeps_naming_a_deleted_key(client, make):
    owner = make.user()
    key = make.key(owner)
    headers = make.headers(owner)
    assert call(client, "DELETE", f"/v1/api-keys/{key.id}", headers).status_code == 200
    document = client.get("/v1/audit-events", headers=headers, query_string={"include": "target"}).get_json()
    assert document["data"][0]["relationships"]["target"]["data"] == {"type": "api-keys", "id": str(key.id)}
    assert document.get("included", []) == []


def test_events_filter_by_target(client, make):
    owner = make.user()
    first, second = make.key(owner), make.key(owner)
    headers = make.headers(owner)
    for key in (first, second):
        call(client, "POST", f"/v1/api-keys/{key.id}/suspend", headers)
    call(client, "PATCH", f"/v1/users/{owner.id}", headers, resource("users", {"is-admin": False}, id_=owner.id))
    listed = client.get("/v1/audit-events", headers=headers, query_string={"filter[target]": str(first.id)})
    assert [(e["attributes"]["action"], e["relationships"]["target"]["data"]["id"])
            for e in listed.get_json()["data"]] == [("key.suspend", str(first.id))]


# --- links: absolute, from the request's host ----------------------------------------------------

def _links(value):
    """Every link anywhere in a document."""
    if isinstance(value, dict):
        found = list(value["links"].values()) if isinstance(value.get("links"), dict) else []
        return found + [link for key, child in value.items() if key != "links" for link in _links(child)]
    if isinstance(value, list):
        return [link for child in value for link in _links(child)]
    return []


@pytest.mark.parametrize("path", [
    "/v1/api-keys?page[size]=1&page[number]=2&include=user", "/v1/api-keys/{key}", "/v1/users/{user}",
    "/v1/api-keys/{key}/relationships/user", "/v1/users/{user}/relationships/api-keys", "/v1/users/{user}/api-keys",
    "/v1/audit-events?include=actor,target", "/v1/audit-events/{event}",
])
def test_every_link_is_absolute_on_the_requests_host(client, make, path):
    owner = make.user(admin=True)
    key = make.key(owner)
    make.key(owner)
    headers = make.headers(owner)
    call(client, "POST", f"/v1/api-keys/{key.id}/suspend", headers)
    event_id = client.get("/v1/audit-events", headers=headers).get_json()["data"][0]["id"]
    response = client.get(path.format(key=key.id, user=owner.id, event=event_id), headers=headers, base_url=HOST)
    assert response.status_code == 200, response.get_data(as_text=True)
    links = [link for link in _links(response.get_json()) if link is not None]
    assert links and all(link.startswith(f"{HOST}/v1/") for link in links), links


@pytest.mark.parametrize("config_overrides", [{"TRUSTED_PROXIES": 1}])
def test_links_name_the_host_a_trusted_proxy_reports(client, make, config_overrides):
    owner = make.user()
    key = make.key(owner)
    headers = {**make.headers(owner), "X-Forwarded-Host": "keys.example.org", "X-Forwarded-Proto": "https"}
    data = client.get(f"/v1/api-keys/{key.id}", headers=headers).get_json()["data"]
    assert data["links"]["self"] == f"https://keys.example.org/v1/api-keys/{key.id}"


@pytest.mark.parametrize("number, prev", [(2, 1), (3, 2), (4, 3), (9, 3)])
def test_prev_never_points_past_the_last_page(client, make, number, prev):
    owner = make.user()
    for _ in range(3):
        make.key(owner)
    query = {"page[size]": 1, "page[number]": number}
    links = client.get("/v1/api-keys", headers=make.headers(owner), query_string=query).get_json()["links"]
    assert links["last"].endswith("page%5Bnumber%5D=3")
    assert links["prev"].endswith(f"page%5Bnumber%5D={prev}")


def test_links_carry_the_query_as_the_client_wrote_it(client, make):
    owner = make.user()
    for name in ("b", "a", "c"):
        make.key(owner, name=name)
    query = "sort=-created-at,name&fields[api-keys]=name,created-at&page[size]=1&page[number]=2"
    response = client.get(f"/v1/api-keys?{query}", headers=make.headers(owner), base_url=HOST)
    links = response.get_json()["links"]
    sent = "sort=-created-at%2Cname&fields%5Bapi-keys%5D=name%2Ccreated-at&page%5Bsize%5D=1"
    assert links["self"] == f"{HOST}/v1/api-keys?{sent}&page%5Bnumber%5D=2"
    assert links["next"] == f"{HOST}/v1/api-keys?{sent}&page%5Bnumber%5D=3"
    followed = client.get(links["next"].removeprefix(HOST), headers=make.headers(owner), base_url=HOST)
    assert followed.status_code == 200 and followed.get_json()["links"]["self"] == links["next"]
    assert set(followed.get_json()["data"][0]["attributes"]) == {"name", "created-at"}


# --- a path with a trailing slash (jsonapi-requests' default) -------------------------------------

def test_a_collection_with_a_trailing_slash_is_the_collection(client, make, secrets_seen):
    owner = make.user()
    headers = make.headers(owner)
    key = make.key(owner)
    listed = client.get("/v1/api-keys/", headers=headers, base_url=HOST)
    assert listed.status_code == 200, listed.get_data(as_text=True)
    assert [item["id"] for item in listed.get_json()["data"]] == [str(key.id)]
    assert listed.get_json()["links"]["self"] == f"{HOST}/v1/api-keys"  # links carry no slash
    assert client.get(f"/v1/users/{owner.id}/api-keys/", headers=headers).status_code == 200

    created = call(client, "POST", "/v1/api-keys/", headers, resource("api-keys", {"name": "made"}))
    assert created.status_code == 201, created.get_data(as_text=True)  # served, not redirected: the body kept
    secrets_seen.add(created.get_json()["data"]["attributes"]["secret"])
    new_id = created.get_json()["data"]["id"]
    assert created.headers["Location"] == created.get_json()["data"]["links"]["self"]
    assert created.headers["Location"].endswith(f"/v1/api-keys/{new_id}")


def test_a_resource_with_a_trailing_slash_is_the_resource(client, make):
    owner = make.user()
    headers = make.headers(owner)
    key = make.key(owner)
    fetched_ = client.get(f"/v1/api-keys/{key.id}/", headers=headers, base_url=HOST)
    assert fetched_.status_code == 200, fetched_.get_data(as_text=True)
    assert fetched_.get_json()["data"]["links"]["self"] == f"{HOST}/v1/api-keys/{key.id}"
    assert all(not link.endswith("/") for link in _links(fetched_.get_json()) if link)

    patched = call(client, "PATCH", f"/v1/api-keys/{key.id}/", headers,
                   resource("api-keys", {"name": "renamed"}, id_=key.id))
    assert patched.status_code == 200 and patched.get_json()["data"]["attributes"]["name"] == "renamed"
    assert call(client, "DELETE", f"/v1/api-keys/{key.id}/", headers).status_code == 200
    assert client.get(f"/v1/api-keys/{key.id}", headers=headers).status_code == 404


def test_a_verification_with_a_trailing_slash_is_answered_the_same(client, make):
    caller = {"X-API-Key": make.key(make.user(admin=True), scopes=["keys:verify"]).secret}
    target = make.key(make.user(), scopes=["llm:*"])
    answers = [client.post(path, json={"key": target.secret, "scopes": ["llm:chat"]}, headers=caller)
               for path in ("/v1/api-keys/verify", "/v1/api-keys/verify/")]
    assert [answer.status_code for answer in answers] == [200, 200]
    assert answers[0].get_json() == answers[1].get_json()
    assert dict(answers[0].headers) == dict(answers[1].headers)


def test_the_openapi_document_names_paths_without_a_trailing_slash(client):
    paths = client.get("/v1/openapi.json").get_json(force=True)["paths"]
    assert "/v1/api-keys" in paths and not [path for path in paths if path.endswith("/")]


def test_only_one_trailing_slash_and_only_under_v1_is_dropped(client):
    assert client.get("/v1/scopes//").status_code == 404
    assert client.get("/v1/").status_code == 404
    assert client.get("/healthz/").status_code == 404


# --- secrets are never cached --------------------------------------------------------------------

def test_a_creation_and_a_rotation_are_never_cached(client, make, secrets_seen):
    owner = make.user()
    headers = make.headers(owner)
    created = create_key(client, headers, secrets_seen)
    assert created.status_code == 201 and created.headers["Cache-Control"] == "no-store"
    assert created.headers["Location"] == created.get_json()["data"]["links"]["self"]
    rotated = call(client, "POST", f"/v1/api-keys/{created.get_json()['data']['id']}/rotate", headers, {})
    secrets_seen.add(rotated.get_json()["data"]["attributes"]["secret"])
    assert rotated.status_code == 201 and rotated.headers["Cache-Control"] == "no-store"
    assert "Cache-Control" not in client.get(created.headers["Location"], headers=headers).headers
