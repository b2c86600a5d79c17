"""A key is a principal strictly narrower than its owner's session (issue 9).

One matrix: every principal x every route that mutates a key or an account or issues a credential.
Every refusal also proves that nothing changed: not the database, not the worker's key cache, not
the audit trail. Then one regression test per finding of the red team, named for it.
"""
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import update

from app.extensions import db
from app.fast_path import FastPath
from app.models import ApiKey, AuditEvent, User
from app.models.types import utcnow
from app.services import lifecycle
from app.services.key_cache import key_cache
from tests.helpers import (
    PASSWORD,
    assert_error,
    bearer,
    call,
    dump_database,
    key_header,
    register_secret,
    resource,
    start_session,
)

NEW_PASSWORD = "a new and much longer passphrase"


def grace_secret(app, make, user, scopes):
    """Return the old secret of a key just rotated with a 10-minute grace period."""
    key = make.key(user, scopes=scopes)
    with app.app_context():
        row = db.session.get(ApiKey, key.id)
        make.secrets.add(lifecycle.rotate(row, 600, app.config["API_KEY_PREFIX"]))
        db.session.commit()
    return key.secret


def set_admin(app, user, admin):
    with app.app_context():
        db.session.execute(update(User).where(User.id == user.id).values(is_admin=admin))
        db.session.commit()


def cached_record(app, secret):
    """What this worker's key cache answers for `secret` now."""
    with app.test_request_context():
        return key_cache().find(secret)


# --- the principals ---------------------------------------------------------------------------------

@dataclass
class World:
    owner: object
    stranger: object
    admin: object
    target: object  # the owner's key every key route acts on


def principal_headers(app, make, world, principal, scope):
    """Headers of `principal`; its keys hold `scope` (and only it, unless the principal says more)."""
    owner = world.owner
    scopes = [scope]
    builders = {
        "owner-session": lambda: make.headers(owner),
        "admin-session": lambda: make.headers(world.admin),
        "key-with-scope": lambda: key_header(make.key(owner, scopes=scopes).secret),
        # the needed scope, but an allowlist, an expiry and a rate limit the target does not have
        "key-narrower-than-target": lambda: bearer(make.key(
            owner, scopes=scopes, allowed_ips=["127.0.0.0/8"], expires_at=utcnow() + timedelta(days=1),
            rate_limit="1000/minute").secret),
        "key-in-rotation-grace": lambda: key_header(grace_secret(app, make, owner, scopes)),
        "key-of-demoted-admin": lambda: key_header(make.key(world.stranger, scopes=[*scopes, "admin:access"]).secret),
        "key-of-other-user": lambda: key_header(make.key(world.stranger, scopes=scopes).secret),
        "anonymous": lambda: {},
    }
    return builders[principal]()


PRINCIPALS = ("owner-session", "admin-session", "key-with-scope", "key-narrower-than-target",
              "key-in-rotation-grace", "key-of-demoted-admin", "key-of-other-user", "anonymous")


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # {key}: the target key, {user}: its owner
    scope: str
    body: Callable | None = None
    ok: int = 200
    answers: dict = None  # principal -> (status, code) where it is not `ok`

    def send(self, client, headers, world):
        url = self.path.format(key=world.target.id, user=world.owner.id)
        return call(client, self.method, url, headers, self.body(world) if self.body else None)


NOT_FOUND = (404, None)
ANONYMOUS = {"anonymous": (401, "UNAUTHENTICATED")}
# What a key route answers to each principal, unless the route says otherwise.
KEY_ROUTE = {
    **ANONYMOUS,
    "key-narrower-than-target": (403, "KEY_NOT_COVERED"),
    "key-in-rotation-grace": (403, "ROTATED_SECRET"),
    "key-of-demoted-admin": NOT_FOUND,  # no admin rights any more: another user's key is not there
    "key-of-other-user": NOT_FOUND,
}
SESSION_ONLY = {principal: (403, "SESSION_REQUIRED") for principal in PRINCIPALS if principal.startswith("key-")}
ACCOUNT_ROUTE = {**ANONYMOUS, **SESSION_ONLY,
                 "key-of-demoted-admin": NOT_FOUND, "key-of-other-user": NOT_FOUND}


def _new_key_for_owner(**attributes):
    return lambda world: resource("api-keys", {"name": "minted", **attributes},
                                  relationships={"user": {"data": {"type": "users", "id": str(world.owner.id)}}})


ROUTES = {
    "create": Route("POST", "/v1/api-keys", "keys:write", _new_key_for_owner(), ok=201, answers={
        **KEY_ROUTE, "key-narrower-than-target": (201, None),  # it mints, and what it mints inherits
        "key-of-demoted-admin": (403, "ADMIN_REQUIRED"), "key-of-other-user": (403, "ADMIN_REQUIRED")}),
    "create-without-allowlist": Route("POST", "/v1/api-keys", "keys:write", _new_key_for_owner(**{"allowed-ips": []}),
                                      ok=201, answers={
        **KEY_ROUTE, "key-narrower-than-target": (403, "RESTRICTION_NOT_GRANTABLE"),
        "key-of-demoted-admin": (403, "ADMIN_REQUIRED"), "key-of-other-user": (403, "ADMIN_REQUIRED")}),
    "patch": Route("PATCH", "/v1/api-keys/{key}", "keys:write",
                   lambda world: resource("api-keys", {"name": "renamed"}, id_=world.target.id), answers=KEY_ROUTE),
    "delete": Route("DELETE", "/v1/api-keys/{key}", "keys:write", answers=KEY_ROUTE),
    "revoke": Route("POST", "/v1/api-keys/{key}/revoke", "keys:write", answers=KEY_ROUTE),
    "suspend": Route("POST", "/v1/api-keys/{key}/suspend", "keys:write", answers=KEY_ROUTE),
    "reactivate": Route("POST", "/v1/api-keys/{key}/reactivate", "keys:write", answers={**ANONYMOUS, **SESSION_ONLY}),
    "rotate": Route("POST", "/v1/api-keys/{key}/rotate", "keys:write", ok=201, answers=KEY_ROUTE),
    "quota-reset": Route("POST", "/v1/api-keys/{key}/quota/reset", "keys:write", answers={
        **ANONYMOUS, "owner-session": (403, "ADMIN_REQUIRED"),
        **{principal: (403, "ADMIN_REQUIRED") for principal in SESSION_ONLY}}),
    "password": Route("PATCH", "/v1/users/{user}", "users:write", lambda world: resource(
        "users", {"password": NEW_PASSWORD, "current-password": PASSWORD}, id_=world.owner.id), answers=ACCOUNT_ROUTE),
    "email": Route("PATCH", "/v1/users/{user}", "users:write", lambda world: resource(
        "users", {"email": "new.address@example.com", "current-password": PASSWORD}, id_=world.owner.id),
        answers=ACCOUNT_ROUTE),
    "promote": Route("PATCH", "/v1/users/{user}", "users:write", lambda world: resource(
        "users", {"is-admin": True}, id_=world.owner.id), answers={
        **{principal: (403, "ADMIN_REQUIRED") for principal in PRINCIPALS if principal != "admin-session"},
        **ANONYMOUS}),
    "sign-up-admin": Route("POST", "/v1/users", "users:write", lambda world: resource(
        "users", {"email": "made@example.com", "password": PASSWORD, "is-admin": True}), ok=201,
        answers={principal: (403, "ADMIN_REQUIRED") for principal in PRINCIPALS if principal != "admin-session"}),
    "delete-account": Route("DELETE", "/v1/users/{user}", "users:write", answers=ACCOUNT_ROUTE),
    "logout-all": Route("POST", "/v1/auth/logout-all", "keys:read", ok=204, answers={**ANONYMOUS, **SESSION_ONLY}),
    # Credentials: only a refresh token obtains an access token; no principal here holds one.
    "refresh": Route("POST", "/v1/auth/refresh", "keys:read", answers={
        **{principal: (401, "UNAUTHENTICATED") for principal in SESSION_ONLY},  # a key in X-API-Key
        "key-narrower-than-target": (401, "INVALID_TOKEN"),  # a key as the Bearer token
        "owner-session": (401, "WRONG_TOKEN_TYPE"), "admin-session": (401, "WRONG_TOKEN_TYPE"),
        "anonymous": (401, "UNAUTHENTICATED")}),
}
# The target's state each route needs to succeed for the principals that may use it.
TARGET_STATUS = {"reactivate": "suspended"}


def snapshot(app, world):
    """Everything a refused request must leave as it was."""
    with app.app_context():
        audit_trail = [(e.action, e.target_id, e.actor_user_id, e.actor_key_id)
                       for e in db.session.query(AuditEvent).order_by(AuditEvent.id)]
    return dump_database(app), audit_trail, cached_record(app, world.target.secret)


@pytest.mark.parametrize("route_name, principal",
                         [pytest.param(r, p, id=f"{r}-{p}") for r in ROUTES for p in PRINCIPALS])
def test_principal_matrix(app, client, make, secrets_seen, route_name, principal):
    route = ROUTES[route_name]
    owner, stranger, admin = make.user(), make.user(admin=True), make.user(admin=True)
    target = make.key(owner, scopes=[], status=TARGET_STATUS.get(route_name, "active"),
                      quota_limit=1000, quota_period="day")
    world = World(owner, stranger, admin, target)
    headers = principal_headers(app, make, world, principal, route.scope)
    set_admin(app, stranger, False)  # the demoted admin; no other principal is the stranger's
    before = snapshot(app, world)

    response = route.send(client, headers, world)

    secret = register_secret(response, secrets_seen)
    status, code = (route.answers or {}).get(principal, (route.ok, None))
    if status >= 400:
        assert_error(response, status, code=code)
        assert snapshot(app, world) == before, "a refused request changed something"
    else:
        assert response.status_code == status, response.get_data(as_text=True)
        assert snapshot(app, world)[0] != before[0]
    if route_name == "create" and status == 201:  # what a key mints is covered by it
        attributes = response.get_json()["data"]["attributes"]
        inherited = principal == "key-narrower-than-target"
        assert (attributes["allowed-ips"] == ["127.0.0.0/8"]) is inherited
        assert (attributes["rate-limit"] == "1000/minute") is inherited
        assert (attributes["expires-at"] is not None) is inherited
        assert secret is not None


# --- the findings, one test each -------------------------------------------------------------------

@pytest.mark.parametrize("sibling_scopes", [["keys:read", "keys:write", "llm:*"], ["keys:verify"], ["admin:access"]])
@pytest.mark.parametrize("action", ["rotate", "revoke", "suspend", "delete", "patch"])
def test_finding_1_a_key_cannot_act_on_a_wider_sibling(app, client, make, secrets_seen, sibling_scopes, action):
    """Critical: a keys:write key rotated a sibling with wider scopes and got its secret."""
    owner = make.user(admin=True)
    attacker = make.key(owner, scopes=["keys:write"])
    sibling = make.key(owner, scopes=sibling_scopes)
    before = make.row(ApiKey, sibling.id)
    url = f"/v1/api-keys/{sibling.id}"
    if action == "delete":
        response = call(client, "DELETE", url, key_header(attacker.secret))
    elif action == "patch":
        response = call(client, "PATCH", url, key_header(attacker.secret),
                        resource("api-keys", {"name": "x"}, sibling.id))
    else:
        response = call(client, "POST", f"{url}/{action}", key_header(attacker.secret))
    assert register_secret(response, secrets_seen) is None
    assert_error(response, 403, code="KEY_NOT_COVERED")
    assert make.row(ApiKey, sibling.id) == before


def test_finding_1_a_key_may_rotate_a_sibling_it_covers(client, make, secrets_seen):
    owner = make.user()
    caller = make.key(owner, scopes=["keys:write", "llm:*"])
    sibling = make.key(owner, scopes=["llm:gpt-4o"], allowed_ips=["10.0.0.0/8"])
    response = call(client, "POST", f"/v1/api-keys/{sibling.id}/rotate", key_header(caller.secret))
    assert response.status_code == 201 and register_secret(response, secrets_seen)


@pytest.mark.parametrize("attributes", [{"password": NEW_PASSWORD}, {"email": "thief@example.com"},
                                        {"password": NEW_PASSWORD, "current-password": PASSWORD}])
@pytest.mark.parametrize("admin", [False, True], ids=["user", "admin"])
def test_finding_2_a_users_write_key_cannot_take_over_the_account(client, make, secrets_seen, attributes, admin):
    """Critical: a users:write key set the owner's password, then logged in to an unscoped session."""
    owner = make.user(admin=admin)
    scopes = ["users:write", "users:read"] + (["admin:access"] if admin else [])
    key = make.key(owner, scopes=scopes)
    secrets_seen.add(NEW_PASSWORD)
    before = make.row(User, owner.id)
    response = call(client, "PATCH", f"/v1/users/{owner.id}", key_header(key.secret),
                    resource("users", attributes, id_=owner.id))
    assert_error(response, 403, code="SESSION_REQUIRED")
    assert make.row(User, owner.id) == before
    assert client.post("/v1/auth/login", json={"email": owner.email, "password": NEW_PASSWORD}).status_code == 401


@pytest.mark.parametrize("current", [None, "not the password at all"], ids=["missing", "wrong"])
@pytest.mark.parametrize("attributes", [{"password": NEW_PASSWORD}, {"email": "elsewhere@example.com"}])
def test_finding_2_a_session_changes_its_password_or_email_only_with_the_current_password(
        client, make, secrets_seen, current, attributes):
    owner = make.user()
    secrets_seen.add(NEW_PASSWORD)
    before = make.row(User, owner.id)
    given = {**attributes, **({"current-password": current} if current else {})}
    response = call(client, "PATCH", f"/v1/users/{owner.id}", make.headers(owner),
                    resource("users", given, id_=owner.id))
    assert_error(response, 403, code="CURRENT_PASSWORD_REQUIRED", pointer="/data/attributes/current-password")
    assert make.row(User, owner.id) == before


def test_finding_2_an_unchanged_email_needs_no_password(client, make):
    owner = make.user()
    response = call(client, "PATCH", f"/v1/users/{owner.id}", make.headers(owner),
                    resource("users", {"email": owner.email.upper()}, id_=owner.id))
    assert response.status_code == 200, response.get_data(as_text=True)


WIDENINGS = {
    # the calling key's own restriction: the attribute a PATCH on itself tries to lift
    "allowlist": ({"allowed_ips": ["127.0.0.0/8"]}, {"allowed-ips": []}, "allowed-ips"),
    "allowlist-wider-network": ({"allowed_ips": ["127.0.0.0/8"]}, {"allowed-ips": ["0.0.0.0/0"]}, "allowed-ips"),
    "expiry-removed": ({"expires_at": utcnow() + timedelta(days=1)}, {"expires-at": None}, "expires-at"),
    "expiry-later": ({"expires_at": utcnow() + timedelta(days=1)},
                     {"expires-at": (utcnow() + timedelta(days=30)).isoformat()}, "expires-at"),
    "rate-limit-removed": ({"rate_limit": "100/minute"}, {"rate-limit": None}, "rate-limit"),
    "rate-limit-higher": ({"rate_limit": "100/minute"}, {"rate-limit": "101/minute"}, "rate-limit"),
    "rate-limit-shorter-window": ({"rate_limit": "100/minute"}, {"rate-limit": "100/second"}, "rate-limit"),
    "quota-removed": ({"quota_limit": 10, "quota_period": "day"}, {"quota": None}, "quota"),
    "quota-higher": ({"quota_limit": 10, "quota_period": "day"}, {"quota": {"limit": 11, "period": "day"}}, "quota"),
    "quota-shorter-period": ({"quota_limit": 10, "quota_period": "month"},
                             {"quota": {"limit": 10, "period": "day"}}, "quota"),
    "budget-removed": ({"budget_limit": 10, "budget_period": "day"}, {"budget": None}, "budget"),
}


@pytest.mark.parametrize("own, change, attribute", WIDENINGS.values(), ids=WIDENINGS.keys())
@pytest.mark.parametrize("how", ["patch-itself", "mint-a-key"])
def test_finding_3_a_key_cannot_lift_its_own_restrictions(client, make, secrets_seen, own, change, attribute, how):
    """High: a keys:write key PATCHed away its allowlist, expiry and limits, or minted a key without them."""
    owner = make.user()
    key = make.key(owner, scopes=["keys:write"], **own)
    before = make.row(ApiKey, key.id)
    if how == "patch-itself":
        response = call(client, "PATCH", f"/v1/api-keys/{key.id}", key_header(key.secret),
                        resource("api-keys", change, id_=key.id))
    else:
        response = call(client, "POST", "/v1/api-keys", key_header(key.secret),
                        resource("api-keys", {"name": "escape", **change}))
    register_secret(response, secrets_seen)
    assert_error(response, 403, code="RESTRICTION_NOT_GRANTABLE", pointer=f"/data/attributes/{attribute}")
    assert make.row(ApiKey, key.id) == before


def test_finding_3_a_key_may_narrow_what_it_mints_and_the_rest_is_inherited(client, make, secrets_seen):
    owner = make.user()
    expires = utcnow() + timedelta(days=3)
    key = make.key(owner, scopes=["keys:write", "llm:*"], allowed_ips=["10.0.0.0/8", "127.0.0.1"],
                   expires_at=expires, rate_limit="100/minute", quota_limit=50, quota_period="month")
    response = call(client, "POST", "/v1/api-keys", key_header(key.secret), resource("api-keys", {
        "name": "child", "scopes": ["llm:gpt-4o"], "allowed-ips": ["10.1.0.0/16"], "rate-limit": "10/hour"}))
    assert response.status_code == 201, response.get_data(as_text=True)
    register_secret(response, secrets_seen)
    attributes = response.get_json()["data"]["attributes"]
    assert attributes["allowed-ips"] == ["10.1.0.0/16"] and attributes["rate-limit"] == "10/hour"
    assert attributes["quota"]["limit"] == 50 and attributes["quota"]["period"] == "month"
    assert attributes["expires-at"].startswith(expires.strftime("%Y-%m-%dT%H:%M:%S"))


def test_finding_3_a_key_cannot_reactivate_a_suspended_sibling(client, make):
    owner = make.user()
    caller = make.key(owner, scopes=["keys:write", "keys:read"])
    sibling = make.key(owner, scopes=[], status="suspended")
    response = call(client, "POST", f"/v1/api-keys/{sibling.id}/reactivate", key_header(caller.secret))
    assert_error(response, 403, code="SESSION_REQUIRED")
    assert make.row(ApiKey, sibling.id)["status"] == "suspended"


def _session_works(client, user, access, refresh):
    read = client.get(f"/v1/users/{user.id}", headers=bearer(access)).status_code
    renewed = client.post("/v1/auth/refresh", headers=bearer(refresh)).status_code
    return read == 200 and renewed == 200


def test_finding_4_a_password_change_ends_every_other_session(app, client, make, secrets_seen):
    """High: old access and refresh tokens kept working after the password changed."""
    owner = make.user()
    stolen, mine = start_session(client, owner, secrets_seen), start_session(client, owner, secrets_seen)
    secrets_seen.add(NEW_PASSWORD)
    assert _session_works(client, owner, *stolen)
    response = call(client, "PATCH", f"/v1/users/{owner.id}", bearer(mine[0]),
                    resource("users", {"password": NEW_PASSWORD, "current-password": PASSWORD}, id_=owner.id))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert_error(client.get(f"/v1/users/{owner.id}", headers=bearer(stolen[0])), 401, code="TOKEN_REVOKED")
    assert_error(client.post("/v1/auth/refresh", headers=bearer(stolen[1])), 401, code="TOKEN_REVOKED")
    assert _session_works(client, owner, *mine)  # the session that changed it goes on
    with app.app_context():
        actions = [e.action for e in db.session.query(AuditEvent).filter_by(subject_user_id=owner.id)]
    assert "auth.sessions_ended" in actions


def test_finding_4_an_admin_reset_ends_every_session_of_the_account(client, make, secrets_seen):
    owner, admin = make.user(), make.user(admin=True)
    tokens = start_session(client, owner, secrets_seen)
    secrets_seen.add(NEW_PASSWORD)
    response = call(client, "PATCH", f"/v1/users/{owner.id}", make.headers(admin),
                    resource("users", {"password": NEW_PASSWORD}, id_=owner.id))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert_error(client.get(f"/v1/users/{owner.id}", headers=bearer(tokens[0])), 401, code="TOKEN_REVOKED")
    assert _session_works(client, owner, *start_session(client, owner, secrets_seen, NEW_PASSWORD))


def test_finding_4_sign_out_everywhere(client, make, secrets_seen):
    owner = make.user()
    first, second = start_session(client, owner, secrets_seen), start_session(client, owner, secrets_seen)
    assert client.post("/v1/auth/logout-all", headers=bearer(first[0])).status_code == 204
    for access, refresh in (first, second):
        assert_error(client.get(f"/v1/users/{owner.id}", headers=bearer(access)), 401, code="TOKEN_REVOKED")
        assert_error(client.post("/v1/auth/refresh", headers=bearer(refresh)), 401, code="TOKEN_REVOKED")
    assert _session_works(client, owner, *start_session(client, owner, secrets_seen))  # a new login is a new session


@pytest.mark.parametrize("way_in", ["fast path", "flask view"])
@pytest.mark.parametrize("scopes", [["keys:verify"], ["keys:*"], ["*:*"]])
def test_finding_5_a_demoted_admins_key_stops_verifying(app, client, make, monkeypatch, way_in, scopes):
    """Medium: a demoted admin's keys:verify key kept verifying every user's keys."""
    if way_in == "flask view":
        monkeypatch.setattr(FastPath, "takes", lambda self, environ: None)
    admin, user = make.user(admin=True), make.user()
    service = key_header(make.key(admin, scopes=scopes).secret)
    checked = make.key(user, scopes=["llm:*"])
    assert client.post("/v1/api-keys/verify", json={"key": checked.secret}, headers=service).status_code == 200
    demote = call(client, "PATCH", f"/v1/users/{admin.id}", make.headers(make.user(admin=True)),
                  resource("users", {"is-admin": False}, id_=admin.id))
    assert demote.status_code == 200, demote.get_data(as_text=True)
    response = client.post("/v1/api-keys/verify", json={"key": checked.secret}, headers=service)
    assert_error(response, 403, code="INSUFFICIENT_SCOPES")


def test_finding_5_admin_only_scopes_of_a_checked_key_count_only_while_its_owner_is_admin(client, make):
    service = key_header(make.key(make.user(admin=True), scopes=["keys:verify"]).secret)
    checked = make.key(make.user(), scopes=["admin:access", "keys:verify"])  # granted by an admin once
    meta = client.post("/v1/api-keys/verify", json={"key": checked.secret, "scopes": ["admin:access"]},
                       headers=service).get_json()["meta"]
    assert meta["code"] == "INSUFFICIENT_SCOPES" and meta["missing-scopes"] == ["admin:access"]


@pytest.mark.parametrize("action", ["rotate", "revoke", "suspend", "delete", "patch", "create"])
def test_finding_6_the_old_secret_cannot_retake_the_key_in_its_grace_period(app, client, make, secrets_seen, action):
    """Medium: the replaced (often leaked) secret rotated the key again and killed the owner's new one."""
    owner = make.user()
    key = make.key(owner, scopes=["keys:read", "keys:write"])
    rotated = call(client, "POST", f"/v1/api-keys/{key.id}/rotate", make.headers(owner), {"grace-period": 600})
    new_secret = register_secret(rotated, secrets_seen)
    old = key_header(key.secret)
    before = make.row(ApiKey, key.id)
    url = f"/v1/api-keys/{key.id}"
    response = {
        "rotate": lambda: call(client, "POST", f"{url}/rotate", old),
        "revoke": lambda: call(client, "POST", f"{url}/revoke", old),
        "suspend": lambda: call(client, "POST", f"{url}/suspend", old),
        "delete": lambda: call(client, "DELETE", url, old),
        "patch": lambda: call(client, "PATCH", url, old, resource("api-keys", {"name": "mine now"}, id_=key.id)),
        "create": lambda: call(client, "POST", "/v1/api-keys", old, resource("api-keys", {"name": "spare"})),
    }[action]()
    register_secret(response, secrets_seen)
    assert_error(response, 403, code="ROTATED_SECRET")
    assert make.row(ApiKey, key.id) == before
    assert client.get(url, headers=old).status_code == 200  # it may still call the API meanwhile
    assert client.get(url, headers=key_header(new_secret)).status_code == 200


@pytest.mark.parametrize("scopes, admin, status", [
    (["keys:read"], False, 403),
    (["keys:read", "admin:access"], True, 403),  # an admin's key listing every account's email
    (["keys:read", "users:read"], False, 200),
])
def test_finding_7_include_needs_the_scope_reading_the_type_needs(client, make, scopes, admin, status):
    """Medium: include=user returned user documents to a key without users:read."""
    owner = make.user(admin=admin)
    make.key(make.user())
    key = make.key(owner, scopes=scopes)
    for path in ("/v1/api-keys", f"/v1/api-keys/{key.id}", f"/v1/users/{owner.id}/api-keys"):
        response = client.get(path, headers=key_header(key.secret), query_string={"include": "user"})
        if status == 403:
            assert_error(response, 403, code="INSUFFICIENT_SCOPES")
        else:
            assert response.status_code == 200 and response.get_json()["included"][0]["type"] == "users"


def test_finding_7_including_keys_needs_keys_read(client, make):
    owner = make.user()
    key = make.key(owner, scopes=["users:read"])
    response = client.get(f"/v1/users/{owner.id}", headers=key_header(key.secret), query_string={"include": "api-keys"})
    assert_error(response, 403, code="INSUFFICIENT_SCOPES")


def test_finding_8_a_failed_login_never_names_the_victim_in_the_senders_trail(app, client, make):
    """Low: a failed login sent with the attacker's JWT was written to the attacker's trail."""
    attacker, victim = make.user(), make.user()
    headers = make.headers(attacker)
    client.post("/v1/auth/login", json={"email": victim.email, "password": "guessing wrong"}, headers=headers)
    seen_by_attacker = client.get("/v1/audit-events", headers=headers).get_json()["data"]
    assert all(event["relationships"]["subject"]["data"] != {"type": "users", "id": str(victim.id)}
               for event in seen_by_attacker)
    assert str(victim.id) not in str(seen_by_attacker)
    seen_by_victim = client.get("/v1/audit-events", headers=make.headers(victim)).get_json()["data"]
    assert [e["attributes"]["action"] for e in seen_by_victim] == ["auth.login_failed"]


@pytest.mark.parametrize("how", ["promote", "sign-up"])
def test_found_in_review_an_admin_key_cannot_make_an_admin(client, make, how):
    """An admin's key (admin:access) made an account whose password its holder knew an admin:
    an unscoped admin session from a key."""
    admin, accomplice = make.user(admin=True), make.user()
    key = key_header(make.key(admin, scopes=["users:read", "users:write", "admin:access"]).secret)
    if how == "promote":
        response = call(client, "PATCH", f"/v1/users/{accomplice.id}", key,
                        resource("users", {"is-admin": True}, id_=accomplice.id))
    else:
        response = call(client, "POST", "/v1/users", key,
                        resource("users", {"email": "new.boss@example.com", "password": PASSWORD, "is-admin": True}))
    assert_error(response, 403, code="SESSION_REQUIRED")
    assert make.row(User, accomplice.id)["is_admin"] is False
    login = client.post("/v1/auth/login", json={"email": "new.boss@example.com", "password": PASSWORD})
    assert login.status_code == 401


@pytest.mark.parametrize("config_overrides", [{"RATE_LIMIT_ACCOUNT_CHANGE": "3 per hour"}])
def test_finding_8_probing_for_taken_emails_is_rate_limited(client, make):
    owner = make.user()
    taken = [make.user().email for _ in range(4)]
    answers = [call(client, "PATCH", f"/v1/users/{owner.id}", make.headers(owner),
                    resource("users", {"email": email, "current-password": PASSWORD}, id_=owner.id)).status_code
               for email in taken]
    assert answers == [409, 409, 409, 429]
