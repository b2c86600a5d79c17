"""What a key may contain and who may grant what: every refusal names the field and writes nothing."""
import threading
from datetime import timedelta

import pytest

from app.models import ApiKey
from app.models.types import utcnow
from tests.conftest import assert_error
from tests.test_api_keys import bearer, call, create_key, key_count, patch_key, register_secret

NOW = utcnow()
ISO = NOW.isoformat()


def _metadata_of(size):
    """A metadata object whose compact JSON is exactly `size` bytes."""
    return {"k": "x" * (size - len('{"k":""}'))}


INVALID = {
    "name-empty": {"name": ""},
    "name-too-long": {"name": "x" * 101},
    "name-null": {"name": None},
    "scope-one-segment": {"scopes": ["keys"]},
    "scope-uppercase": {"scopes": ["Keys:Read"]},
    "scope-empty-segment": {"scopes": ["a::b"]},
    "scope-space": {"scopes": ["bad scope"]},
    "scopes-not-a-list": {"scopes": "keys:read"},
    "expires-in-the-past": {"expires-at": (NOW - timedelta(hours=1)).isoformat()},
    "expires-beyond-lifetime": {"expires-at": (NOW + timedelta(days=731)).isoformat()},
    "expires-not-a-date": {"expires-at": "tomorrow"},
    "ip-bad-prefix": {"allowed-ips": ["10.0.0.0/33"]},
    "ip-not-an-address": {"allowed-ips": ["intranet"]},
    "metadata-too-big": {"metadata": _metadata_of(4097)},
    "metadata-not-object": {"metadata": ["a"]},
    "tag-uppercase": {"tags": ["Prod"]},
    "tag-empty": {"tags": [""]},
    "tag-too-long": {"tags": ["x" * 33]},
    "tags-too-many": {"tags": [f"t{i}" for i in range(21)]},
    "rate-limit-words": {"rate-limit": "lots"},
    "rate-limit-empty": {"rate-limit": ""},
    "quota-period": {"quota": {"limit": 10, "period": "week"}},
    "quota-zero": {"quota": {"limit": 0, "period": "day"}},
    "quota-no-period": {"quota": {"limit": 10}},
    "quota-bool": {"quota": {"limit": True, "period": "day"}},
    "quota-string": {"quota": {"limit": "10", "period": "day"}},
    "quota-extra-field": {"quota": {"limit": 10, "period": "day", "burst": 5}},
    "quota-not-object": {"quota": 10},
    "budget-period": {"budget": {"limit": 10, "period": "year"}},
}
READ_ONLY = {
    "digest": "0" * 64, "start": "lk_AAAAAA", "last4": "AAAA", "created-at": ISO, "updated-at": ISO,
    "last-used-at": ISO, "suspended-at": ISO, "status": "active", "secret": "lk_" + "A" * 38,
    "rotation-grace-until": ISO, "previous-digest": "0" * 64, "version": 7, "user-id": 1,
}


def pointer(attributes):
    return f"/data/attributes/{next(iter(attributes))}"


@pytest.mark.parametrize("attributes", INVALID.values(), ids=INVALID.keys())
def test_create_refuses_invalid_attributes(app, client, make, secrets_seen, attributes):
    owner = make.user()
    response = create_key(client, make.headers(owner), secrets_seen, **{"name": "valid", **attributes})
    assert_error(response, 422, pointer=pointer(attributes))
    assert key_count(app, owner.id) == 0


@pytest.mark.parametrize("attributes", INVALID.values(), ids=INVALID.keys())
def test_patch_refuses_invalid_attributes(client, make, attributes):
    owner = make.user()
    key = make.key(owner)
    before = make.row(ApiKey, key.id)
    assert_error(patch_key(client, make.headers(owner), key.id, attributes), 422, pointer=pointer(attributes))
    assert make.row(ApiKey, key.id) == before


VALID = {
    "name-100": {"name": "x" * 100},
    "scopes": {"scopes": ["keys:read", "llm:*", "llm:gpt-4o", "rag:search"]},
    "expires-within-lifetime": {"expires-at": (NOW + timedelta(days=729)).isoformat()},
    "allowed-ips": {"allowed-ips": ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]},
    "metadata-4096": {"metadata": _metadata_of(4096)},
    "tags": {"tags": ["ci", "env:prod", "v1.2", "team_a-b"]},
    "rate-limit": {"rate-limit": "100/minute;10000/day"},
    "quota": {"quota": {"limit": 1000, "period": "month"}},
    "quota-as-shown": {"quota": {"limit": 1000, "period": "day", "used": 7, "remaining": 993, "resets-at": ISO}},
    "budget": {"budget": {"limit": 5, "period": "total"}},
}


@pytest.mark.parametrize("attributes", VALID.values(), ids=VALID.keys())
def test_create_accepts_valid_attributes(app, client, make, secrets_seen, attributes):
    owner = make.user()
    response = create_key(client, make.headers(owner), secrets_seen, **attributes)
    assert response.status_code == 201, response.get_data(as_text=True)
    (name, sent), = attributes.items()
    got = response.get_json()["data"]["attributes"][name]
    if name in ("quota", "budget"):  # they also say what is used and what remains (never taken)
        assert (got["limit"], got["period"], got["used"]) == (sent["limit"], sent["period"], 0)
    else:
        assert got == sent
    assert key_count(app, owner.id) == 1


def test_an_expiry_without_an_offset_is_taken_as_utc(client, make, secrets_seen):
    expiry = (NOW + timedelta(days=1)).replace(microsecond=0)
    response = create_key(client, make.headers(make.user()), secrets_seen,
                          **{"expires-at": expiry.replace(tzinfo=None).isoformat()})
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["data"]["attributes"]["expires-at"] == expiry.isoformat()


@pytest.mark.parametrize("field", READ_ONLY)
def test_create_refuses_read_only_fields(app, client, make, secrets_seen, field):
    owner = make.user()
    response = create_key(client, make.headers(owner), secrets_seen, **{field: READ_ONLY[field]})
    assert_error(response, 422, pointer=f"/data/attributes/{field}")
    assert key_count(app, owner.id) == 0


@pytest.mark.parametrize("field", READ_ONLY)
def test_patch_refuses_read_only_fields(client, make, field):
    owner = make.user()
    key = make.key(owner, status="suspended")
    before = make.row(ApiKey, key.id)
    response = patch_key(client, make.headers(owner), key.id, {field: READ_ONLY[field]})
    assert_error(response, 422, pointer=f"/data/attributes/{field}")
    assert make.row(ApiKey, key.id) == before


@pytest.mark.parametrize("is_admin", [False, True], ids=["owner", "admin"])
def test_patch_cannot_move_a_key_to_another_owner(client, make, is_admin):
    owner, stranger = make.user(), make.user()
    key = make.key(owner)
    before = make.row(ApiKey, key.id)
    caller = make.user(admin=True) if is_admin else owner
    relationships = {"user": {"data": {"type": "users", "id": str(stranger.id)}}}
    response = patch_key(client, make.headers(caller), key.id, {"name": "moved"}, relationships)
    assert_error(response, 403, code="OWNER_IMMUTABLE")
    assert make.row(ApiKey, key.id) == before


def test_an_admin_creates_keys_for_another_user(app, client, make, secrets_seen):
    admin, owner = make.user(admin=True), make.user()
    relationships = {"user": {"data": {"type": "users", "id": str(owner.id)}}}
    response = create_key(client, make.headers(admin), secrets_seen, relationships=relationships)
    assert response.status_code == 201
    assert response.get_json()["data"]["relationships"]["user"]["data"]["id"] == str(owner.id)
    assert (key_count(app, owner.id), key_count(app, admin.id)) == (1, 0)


# --- how many keys ---------------------------------------------------------------------------------

@pytest.mark.parametrize("config_overrides", [{"API_KEY_MAX_PER_USER": 2}])
@pytest.mark.parametrize("as_admin", [False, True], ids=["owner", "admin"])
def test_no_key_beyond_the_maximum(app, client, make, secrets_seen, as_admin):
    owner = make.user()
    make.key(owner)
    make.key(owner)
    caller = make.user(admin=True) if as_admin else owner
    relationships = {"user": {"data": {"type": "users", "id": str(owner.id)}}}
    response = create_key(client, make.headers(caller), secrets_seen, relationships=relationships)
    assert_error(response, 409, code="KEY_LIMIT_REACHED")
    assert key_count(app, owner.id) == 2


@pytest.mark.parametrize("config_overrides", [{"API_KEY_MAX_PER_USER": 1}])
def test_concurrent_creations_cannot_pass_the_maximum(app, make, secrets_seen):
    for _ in range(5):
        owner = make.user()
        headers = make.headers(owner)
        barrier, responses = threading.Barrier(2), []

        def create(headers, barrier, responses):
            client = app.test_client()
            barrier.wait()
            responses.append(create_key(client, headers, secrets_seen))

        threads = [threading.Thread(target=create, args=(headers, barrier, responses)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(response.status_code for response in responses) == [201, 409]
        assert_error(next(r for r in responses if r.status_code == 409), 409, code="KEY_LIMIT_REACHED")
        assert key_count(app, owner.id) == 1


# --- which scopes a caller may grant ----------------------------------------------------------------

GRANTS = [
    # (caller is admin, scopes of the calling key or None for a JWT, scopes asked for, granted)
    (False, None, ["keys:read", "llm:*"], True),
    (False, None, ["keys:verify"], False),
    (False, None, ["admin:access"], False),
    (False, None, ["keys:*"], False),
    (False, None, ["*:verify"], False),
    (False, None, ["*:*"], False),
    (True, None, ["keys:verify", "admin:access", "*:*"], True),
    (False, ["keys:write", "llm:*"], ["llm:gpt-4o"], True),
    (False, ["keys:write", "llm:*"], ["llm:*"], True),
    (False, ["keys:write", "llm:*"], ["rag:search"], False),
    (False, ["keys:write", "llm:*"], ["keys:read"], False),
    (False, ["keys:write", "llm:gpt-4o"], ["llm:*"], False),
    (False, ["keys:write"], ["keys:write"], True),
    (False, ["keys:write", "keys:verify"], ["keys:verify"], False),  # a user key that somehow holds it
    (True, ["keys:write", "keys:verify"], ["keys:verify"], False),  # an admin's key without admin:access
    (True, ["keys:write", "keys:verify", "admin:access"], ["keys:verify"], True),
]


def _grant_id(case):
    is_admin, key_scopes, wanted, _ = case
    caller = ("admin" if is_admin else "user") + (f"-key[{' '.join(key_scopes)}]" if key_scopes else "-jwt")
    return f"{caller}-grants[{' '.join(wanted)}]"


@pytest.mark.parametrize("method", ["POST", "PATCH"])
@pytest.mark.parametrize("is_admin, key_scopes, wanted, granted", GRANTS, ids=map(_grant_id, GRANTS))
def test_scope_grants(app, client, make, secrets_seen, method, is_admin, key_scopes, wanted, granted):
    owner = make.user(admin=is_admin)
    headers = bearer(make.key(owner, scopes=key_scopes).secret) if key_scopes else make.headers(owner)
    target = make.key(owner, scopes=[])
    before = make.row(ApiKey, target.id), key_count(app, owner.id)
    if method == "POST":
        response = create_key(client, headers, secrets_seen, scopes=wanted)
    else:
        response = patch_key(client, headers, target.id, {"scopes": wanted})
    register_secret(response, secrets_seen)
    if granted:
        assert response.status_code == (201 if method == "POST" else 200), response.get_data(as_text=True)
        assert response.get_json()["data"]["attributes"]["scopes"] == wanted
    else:
        assert_error(response, 403, code="SCOPE_NOT_GRANTABLE", pointer="/data/attributes/scopes")
        assert (make.row(ApiKey, target.id), key_count(app, owner.id)) == before


# --- malformed documents ----------------------------------------------------------------------------

MALFORMED = {
    "data-not-an-object": {"data": "x"},
    "data-null": {"data": None},
    "body-a-string": "x",
    "body-a-number": 1,
    "attributes-not-an-object": {"data": {"type": "api-keys", "attributes": "x"}},
    "relationships-not-an-object": {"data": {"type": "api-keys", "attributes": {"name": "x"}, "relationships": "x"}},
    "user-id-not-a-number": {"data": {"type": "api-keys", "attributes": {"name": "x"},
                                      "relationships": {"user": {"data": {"type": "users", "id": "abc"}}}}},
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_malformed_documents_are_client_errors(app, client, make, secrets_seen, method, body):
    owner = make.user()
    key = make.key(owner)
    before = make.row(ApiKey, key.id), key_count(app, owner.id)
    url = "/v1/api-keys" if method == "POST" else f"/v1/api-keys/{key.id}"
    response = call(client, method, url, make.headers(owner), body)
    register_secret(response, secrets_seen)
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)
    assert (make.row(ApiKey, key.id), key_count(app, owner.id)) == before
