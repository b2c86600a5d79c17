"""The `user` resource: who may do what to an account, sign-up rules, and what never leaves the server.

Product map: `POST /v1/users` (anyone; is-admin only by an admin), `GET /v1/users` (admin),
`GET/PATCH/DELETE /v1/users/<id>` (self or admin; another user's account is a 404, like a missing one).
A request made with an API key acts as the key's owner, narrowed to the key's scopes.
"""

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import User
from tests.helpers import JSONAPI, PASSWORD, assert_error, bearer, call, login, resource

NEW_EMAIL = "renamed@example.com"
NEW_PASSWORD = "a different passphrase, long enough"


def sign_up(client, attributes, headers=None, id_=None):
    return call(client, "POST", "/v1/users", headers, resource("users", attributes, id_))


def user_count(app):
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(User))


@pytest.fixture
def people(make):
    """The account under test (`self`), another ordinary user, and an admin."""
    return {"self": make.user(), "other": make.user(), "admin": make.user(admin=True)}


# --- The permission matrix ------------------------------------------------------------------------

ENDPOINTS = {
    "list GET": lambda target: ("GET", "/v1/users", None),
    "detail GET": lambda target: ("GET", f"/v1/users/{target.id}", None),
    "detail PATCH": lambda target: ("PATCH", f"/v1/users/{target.id}",
                                    resource("users", {"email": NEW_EMAIL.upper(), "current-password": PASSWORD},
                                             target.id)),
    "detail DELETE": lambda target: ("DELETE", f"/v1/users/{target.id}", None),
}

# What the target row looks like after a successful request.
EFFECTS = {
    "list GET": lambda before, after: after == before,
    "detail GET": lambda before, after: after == before,
    "detail PATCH": lambda before, after: after["email"] == NEW_EMAIL,  # stored lower-cased
    "detail DELETE": lambda before, after: after is None,
}

MATRIX = [
    ("list GET", "self", 403, "ADMIN_REQUIRED"),
    ("list GET", "other", 403, "ADMIN_REQUIRED"),
    ("list GET", "admin", 200, None),
    ("list GET", "anonymous", 401, "UNAUTHENTICATED"),
    ("detail GET", "self", 200, None),
    ("detail GET", "other", 404, None),
    ("detail GET", "admin", 200, None),
    ("detail GET", "anonymous", 401, "UNAUTHENTICATED"),
    ("detail PATCH", "self", 200, None),
    ("detail PATCH", "other", 404, None),
    ("detail PATCH", "admin", 200, None),
    ("detail PATCH", "anonymous", 401, "UNAUTHENTICATED"),
    ("detail DELETE", "self", 200, None),
    ("detail DELETE", "other", 404, None),
    ("detail DELETE", "admin", 200, None),
    ("detail DELETE", "anonymous", 401, "UNAUTHENTICATED"),
]


@pytest.mark.parametrize("endpoint, actor, status, code", MATRIX)
def test_permission_matrix(client, make, people, endpoint, actor, status, code):
    target = people["self"]
    headers = make.headers(people[actor]) if actor != "anonymous" else {}
    method, path, body = ENDPOINTS[endpoint](target)
    before = make.row(User, target.id)

    response = call(client, method, path, headers, body)

    after = make.row(User, target.id)
    if status >= 400:
        assert_error(response, status, code)
        assert after == before, "a refused request changed the account"
    else:
        assert response.status_code == status, response.get_data(as_text=True)
        assert response.headers["Content-Type"].startswith(JSONAPI)
        assert EFFECTS[endpoint](before, after), after


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_another_users_account_is_indistinguishable_from_a_missing_one(client, make, people, method):
    headers = make.headers(people["other"])
    missing_id = max(user.id for user in people.values()) + 1000

    def attempt(user_id):
        body = resource("users", {"email": NEW_EMAIL}, user_id) if method == "PATCH" else None
        return call(client, method, f"/v1/users/{user_id}", headers, body)

    foreign, missing = attempt(people["self"].id), attempt(missing_id)

    assert_error(foreign, 404)
    assert (foreign.status_code, foreign.get_json()) == (missing.status_code, missing.get_json())


def test_admin_list_shows_every_account(client, make, people):
    response = client.get("/v1/users", headers=make.headers(people["admin"]))

    assert response.status_code == 200
    assert {item["id"] for item in response.get_json()["data"]} == {str(user.id) for user in people.values()}
    assert response.get_json()["meta"]["count"] == len(people)


@pytest.mark.parametrize("size, status", [("2", 200), ("100", 200), ("101", 400), ("0", 400), ("two", 400)])
def test_admin_list_page_size_is_bounded(client, make, people, size, status):
    response = client.get("/v1/users", query_string={"page[size]": size}, headers=make.headers(people["admin"]))

    if status == 200:
        assert response.status_code == 200
        assert len(response.get_json()["data"]) == min(int(size), len(people))
    else:
        error = assert_error(response, status)
        assert error["source"] == {"parameter": "page[size]"}


def test_admin_list_links_to_the_next_page(client, make, people):
    response = client.get("/v1/users", query_string={"page[size]": 2}, headers=make.headers(people["admin"]))

    document = response.get_json()
    assert len(document["data"]) == 2
    assert "next" in document["links"]


# --- Requests made with an API key act as its owner, narrowed to the key's scopes ------------------

KEY_CASES = [
    # owner, key scopes, method, whose account, status, code
    ("user", ["users:read"], "GET", "self", 200, None),
    ("user", ["users:*"], "GET", "self", 200, None),
    ("user", ["keys:read"], "GET", "self", 403, "INSUFFICIENT_SCOPES"),
    ("user", ["users:read"], "DELETE", "self", 403, "INSUFFICIENT_SCOPES"),
    ("user", ["users:read"], "PATCH", "self", 403, "INSUFFICIENT_SCOPES"),
    ("user", ["users:write"], "PATCH", "self", 403, "SESSION_REQUIRED"),  # a key never changes an email
    ("user", ["users:write"], "DELETE", "self", 403, "SESSION_REQUIRED"),
    ("user", ["users:read"], "GET", "other", 404, None),
    ("admin", ["users:read"], "GET", "list", 403, "ADMIN_REQUIRED"),
    ("admin", ["users:read", "admin:access"], "GET", "list", 200, None),
    ("admin", ["users:read", "admin:access"], "GET", "other", 200, None),
]


@pytest.mark.parametrize("header", ["X-API-Key", "Authorization"])
@pytest.mark.parametrize("owner, scopes, method, target, status, code", KEY_CASES)
def test_api_key_acts_as_its_owner_within_its_scopes(client, make, people, header, owner, scopes, method,
                                                     target, status, code):
    key = make.key(people["self" if owner == "user" else "admin"], scopes=scopes)
    headers = {"X-API-Key": key.secret} if header == "X-API-Key" else bearer(key.secret)
    path = "/v1/users" if target == "list" else f"/v1/users/{people[target].id}"
    body = resource("users", {"email": NEW_EMAIL}, people[target].id) if method == "PATCH" else None
    before = make.row(User, people["self"].id)

    response = call(client, method, path, headers, body)

    if status >= 400:
        assert_error(response, status, code)
        assert make.row(User, people["self"].id) == before
    else:
        assert response.status_code == status, response.get_data(as_text=True)


# --- Sign-up ---------------------------------------------------------------------------------------

SIGNUP_REFUSALS = {
    "invalid email": ({"email": "not-an-email", "password": PASSWORD}, 422, None, "/data/attributes/email"),
    "no email": ({"password": PASSWORD}, 422, None, "/data/attributes/email"),
    "password one character short": ({"email": "short@example.com", "password": "x" * 11}, 422, None,
                                     "/data/attributes/password"),
    "no password": ({"email": "nopass@example.com"}, 422, None, "/data/attributes/password"),
    "is-admin by anonymous": ({"email": "boss@example.com", "password": PASSWORD, "is-admin": True}, 403,
                              "ADMIN_REQUIRED", "/data/attributes/is-admin"),
}


@pytest.mark.parametrize("attributes, status, code, pointer", SIGNUP_REFUSALS.values(), ids=SIGNUP_REFUSALS.keys())
def test_sign_up_refusals_create_nothing(app, client, attributes, status, code, pointer):
    before = user_count(app)

    response = sign_up(client, attributes)

    assert_error(response, status, code, pointer)
    assert user_count(app) == before


def test_sign_up_with_a_client_generated_id_is_forbidden(app, client):
    before = user_count(app)

    response = sign_up(client, {"email": "chosen@example.com", "password": PASSWORD}, id_=4242)

    assert_error(response, 403, pointer="/data/id")
    assert user_count(app) == before


def test_sign_up_with_an_existing_email_in_another_case_is_a_conflict(app, client, make):
    make.user(email="taken@example.com")
    before = user_count(app)

    response = sign_up(client, {"email": "TAKEN@Example.COM", "password": PASSWORD})

    assert_error(response, 409, pointer="/data/attributes/email")
    assert user_count(app) == before


def test_sign_up_accepts_a_password_of_exactly_the_minimum_length(client, secrets_seen):
    password = secrets_seen.add("x" * 12)

    response = sign_up(client, {"email": "minimum@example.com", "password": password})

    assert response.status_code == 201, response.get_data(as_text=True)
    assert login(client, "minimum@example.com", password).status_code == 200


def test_sign_up_lower_cases_the_email(client, make):
    response = sign_up(client, {"email": "Mixed.Case@Example.COM", "password": PASSWORD})

    assert response.status_code == 201
    created = response.get_json()["data"]
    assert created["attributes"]["email"] == "mixed.case@example.com"
    assert created["attributes"]["is-admin"] is False
    assert response.headers["Location"].endswith(f"/v1/users/{created['id']}")
    assert make.row(User, int(created["id"]))["email"] == "mixed.case@example.com"


@pytest.mark.parametrize("actor, scopes, status", [
    ("self", None, 403),
    ("admin", None, 201),
    ("admin", ["users:read", "users:write"], 403),  # a key without admin:access has no admin rights
])
def test_only_an_admin_may_create_an_admin(make, client, people, actor, scopes, status):
    owner = people[actor]
    headers = make.headers(owner) if scopes is None else {"X-API-Key": make.key(owner, scopes=scopes).secret}

    response = sign_up(client, {"email": "new.admin@example.com", "password": PASSWORD, "is-admin": True}, headers)

    if status == 403:
        assert_error(response, 403, "ADMIN_REQUIRED", "/data/attributes/is-admin")
    else:
        assert response.status_code == 201
        created = response.get_json()["data"]
        assert created["attributes"]["is-admin"] is True
        assert make.row(User, int(created["id"]))["is_admin"] is True


# --- Passwords never leave the server --------------------------------------------------------------

def _sign_up_response(client, make, people):
    return sign_up(client, {"email": "fresh@example.com", "password": PASSWORD})


def _detail_response(client, make, people):
    return client.get(f"/v1/users/{people['self'].id}", headers=make.headers(people["self"]))


def _list_response(client, make, people):
    return client.get("/v1/users", headers=make.headers(people["admin"]))


def _patch_response(client, make, people):
    target = people["self"]
    return call(client, "PATCH", f"/v1/users/{target.id}", make.headers(target),
                resource("users", {"password": NEW_PASSWORD, "current-password": PASSWORD}, target.id))


@pytest.mark.parametrize("request_", [_sign_up_response, _detail_response, _list_response, _patch_response],
                         ids=["sign-up", "detail", "list", "patch"])
def test_no_response_contains_a_password_or_its_hash(client, make, people, request_, secrets_seen):
    secrets_seen.add(NEW_PASSWORD)
    hashes = [make.row(User, user.id)["password_hash"] for user in people.values()]

    response = request_(client, make, people)

    assert response.status_code in (200, 201), response.get_data(as_text=True)
    body = response.get_data(as_text=True)
    for forbidden in ["password", "$argon2", PASSWORD, NEW_PASSWORD, *hashes]:
        assert forbidden not in body


# --- Changing and deleting one's own account ------------------------------------------------------

def test_new_password_works_and_old_one_does_not(client, make, secrets_seen):
    user = make.user()
    secrets_seen.add(NEW_PASSWORD)

    response = call(client, "PATCH", f"/v1/users/{user.id}", make.headers(user),
                    resource("users", {"password": NEW_PASSWORD, "current-password": PASSWORD}, user.id))

    assert response.status_code == 200, response.get_data(as_text=True)
    assert login(client, user.email, NEW_PASSWORD).status_code == 200
    assert_error(login(client, user.email, PASSWORD), 401, "INVALID_CREDENTIALS")


PATCH_REFUSALS = {
    "self-promotion to admin": ({"is-admin": True}, 403, "ADMIN_REQUIRED", "/data/attributes/is-admin"),
    "another account's email in another case": ({"email": "TAKEN@example.com", "current-password": PASSWORD}, 409, None,
                                                "/data/attributes/email"),
    "password too short": ({"password": "x" * 11}, 422, None, "/data/attributes/password"),
}


@pytest.mark.parametrize("attributes, status, code, pointer", PATCH_REFUSALS.values(), ids=PATCH_REFUSALS.keys())
def test_patch_refusals_change_nothing(client, make, attributes, status, code, pointer):
    make.user(email="taken@example.com")
    user = make.user()
    before = make.row(User, user.id)

    response = call(client, "PATCH", f"/v1/users/{user.id}", make.headers(user),
                    resource("users", attributes, user.id))

    assert_error(response, status, code, pointer)
    assert [error.get("source", {}).get("pointer") for error in response.get_json()["errors"]] == [pointer]
    assert make.row(User, user.id) == before


def test_deleted_account_token_is_refused(client, make):
    user = make.user()
    headers = make.headers(user)
    assert call(client, "DELETE", f"/v1/users/{user.id}", headers).status_code == 200

    assert make.row(User, user.id) is None
    assert_error(client.get(f"/v1/users/{user.id}", headers=headers), 401, "INVALID_TOKEN")
    assert_error(login(client, user.email, PASSWORD), 401, "INVALID_CREDENTIALS")


def test_deleted_account_api_key_is_refused_at_once(client, make):
    user = make.user()
    key = make.key(user, scopes=["users:read", "users:write"])
    assert client.get(f"/v1/users/{user.id}", headers={"X-API-Key": key.secret}).status_code == 200

    assert call(client, "DELETE", f"/v1/users/{user.id}", make.headers(user)).status_code == 200

    assert_error(client.get(f"/v1/users/{user.id}", headers={"X-API-Key": key.secret}), 401, "NOT_FOUND")


class TestTheNextAccountInheritsNothing:
    """A new sign-up must not pick up the credentials of an account deleted before it."""

    @pytest.fixture
    def config_overrides(self):
        return {"KEY_CACHE_SECONDS": 0}  # no cached key records: only the database decides

    @pytest.mark.parametrize("credential", ["jwt", "api key"])
    def test_old_credentials_do_not_open_the_new_account(self, client, make, credential):
        departed = make.user()
        key = make.key(departed, scopes=["users:read"])
        headers = make.headers(departed) if credential == "jwt" else {"X-API-Key": key.secret}
        assert call(client, "DELETE", f"/v1/users/{departed.id}", make.headers(departed)).status_code == 200

        created = sign_up(client, {"email": "newcomer@example.com", "password": PASSWORD})
        assert created.status_code == 201
        newcomer_id = created.get_json()["data"]["id"]

        assert client.get(f"/v1/users/{newcomer_id}", headers=headers).status_code == 401
