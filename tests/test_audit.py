"""The audit trail: one event per mutation, in the same transaction, visible to the right people."""
import pytest
from flask_sqlalchemy.session import Session as FlaskSession

from app.extensions import db
from app.models import ApiKey, AuditEvent
from tests.helpers import PASSWORD, assert_error, call, resource


def events(app):
    with app.app_context():
        return [(e.action, e.target_type, e.target_id, e.actor_user_id, tuple(e.changes))
                for e in db.session.query(AuditEvent).order_by(AuditEvent.id)]


def test_every_key_mutation_leaves_exactly_one_event(app, client, make, secrets_seen):
    owner = make.user()
    headers = make.headers(owner)
    created = call(client, "POST", "/v1/api-keys", headers, resource("api-keys", {"name": "ci"}))
    secrets_seen.add(created.get_json()["data"]["attributes"]["secret"])
    key_id = created.get_json()["data"]["id"]
    steps = [
        ("PATCH", f"/v1/api-keys/{key_id}", resource("api-keys", {"name": "ci-2", "tags": ["x"]}, id_=key_id)),
        ("POST", f"/v1/api-keys/{key_id}/suspend", None),
        ("POST", f"/v1/api-keys/{key_id}/reactivate", None),
        ("POST", f"/v1/api-keys/{key_id}/rotate", {"grace-period": 0}),
        ("POST", f"/v1/api-keys/{key_id}/revoke", None),
        ("DELETE", f"/v1/api-keys/{key_id}", None),
    ]
    for method, url, body in steps:
        response = call(client, method, url, headers, body)
        assert response.status_code in (200, 201), response.get_json()
        if response.status_code == 201:
            secrets_seen.add(response.get_json()["data"]["attributes"]["secret"])
    assert events(app) == [
        ("key.create", "key", key_id, owner.id, ()),
        ("key.update", "key", key_id, owner.id, ("name", "tags")),
        ("key.suspend", "key", key_id, owner.id, ("status", "suspended-at")),
        ("key.reactivate", "key", key_id, owner.id, ("status", "suspended-at")),
        ("key.rotate", "key", key_id, owner.id, ("secret",)),
        ("key.revoke", "key", key_id, owner.id, ("revoked-at", "status")),
        ("key.delete", "key", key_id, owner.id, ()),
    ]


def test_failed_requests_leave_no_event(app, client, make):
    owner = make.user()
    key = make.key(owner, status="revoked")
    assert call(client, "POST", f"/v1/api-keys/{key.id}/revoke", make.headers(owner)).status_code == 409
    assert call(client, "POST", f"/v1/api-keys/{key.id}/revoke", make.headers(make.user())).status_code == 404
    assert events(app) == []


def test_account_and_session_events(app, client, make):
    call(client, "POST", "/v1/users", {}, resource("users", {"email": "ann@example.com", "password": PASSWORD}))
    client.post("/v1/auth/login", json={"email": "ann@example.com", "password": "wrong password!"})
    client.post("/v1/auth/login", json={"email": "nobody@example.com", "password": "wrong password!"})
    login = client.post("/v1/auth/login", json={"email": "ann@example.com", "password": PASSWORD})
    token = login.get_json()["meta"]["access_token"]
    user_id = int(login.get_json()["meta"]["user_id"])
    bearer = {"Authorization": f"Bearer {token}"}
    change = {"password": PASSWORD + "!", "current-password": PASSWORD}
    call(client, "PATCH", f"/v1/users/{user_id}", bearer, resource("users", change, id_=user_id))
    client.post("/v1/auth/logout", headers=bearer)
    actions = [(action, target_id, tuple(changes)) for action, _, target_id, _, changes in events(app)]
    assert actions == [
        ("user.create", str(user_id), ()), ("auth.login_failed", str(user_id), ()), ("auth.login_failed", None, ()),
        ("auth.login", str(user_id), ()), ("user.update", str(user_id), ("password",)),
        ("auth.logout", str(user_id), ()),
    ]


def test_an_audit_write_failure_rolls_the_change_back(app, client, make, monkeypatch):
    owner = make.user()
    key = make.key(owner)
    before = make.row(ApiKey, key.id)
    original_flush = FlaskSession.flush

    def fail_on_audit(session, *args, **kwargs):
        if any(isinstance(obj, AuditEvent) for obj in session.new):
            raise RuntimeError("audit storage is down")
        return original_flush(session, *args, **kwargs)

    monkeypatch.setattr(FlaskSession, "flush", fail_on_audit)
    headers = make.headers(owner)
    assert_error(call(client, "POST", f"/v1/api-keys/{key.id}/revoke", headers), 500)
    assert_error(call(client, "PATCH", f"/v1/api-keys/{key.id}", headers,
                     resource("api-keys", {"name": "renamed"}, id_=key.id)), 500)
    assert_error(call(client, "DELETE", f"/v1/api-keys/{key.id}", headers), 500)
    assert_error(call(client, "POST", "/v1/api-keys", headers, resource("api-keys", {"name": "new"})), 500)
    monkeypatch.undo()
    assert make.row(ApiKey, key.id) == before
    with app.app_context():
        assert db.session.query(ApiKey).count() == 1 and db.session.query(AuditEvent).count() == 0


@pytest.mark.parametrize("viewer, visible", [("owner", 1), ("other", 0), ("admin", 1)])
def test_who_sees_which_events(app, client, make, viewer, visible):
    owner = make.user()
    key = make.key(owner, scopes=["keys:read", "keys:write"])
    admin = make.user(admin=True)
    call(client, "POST", f"/v1/api-keys/{key.id}/suspend", make.headers(admin))  # an admin acts on owner's key
    headers = {"owner": make.headers(owner), "other": make.headers(make.user()), "admin": make.headers(admin)}[viewer]
    listed = client.get("/v1/audit-events", headers=headers).get_json()
    assert listed["meta"]["count"] == visible
    if visible:
        event = listed["data"][0]
        assert event["attributes"]["action"] == "key.suspend" and event["attributes"]["ip"] == "127.0.0.1"
        assert event["relationships"]["actor"]["data"] == {"type": "users", "id": str(admin.id)}


def test_events_filter_by_action_and_refuse_writes(app, client, make):
    owner = make.user()
    headers = make.headers(owner)
    client.post("/v1/auth/login", json={"email": owner.email, "password": "wrong password!"})
    client.post("/v1/auth/login", json={"email": owner.email, "password": PASSWORD})
    listed = client.get("/v1/audit-events?filter[action]=auth.login", headers=headers).get_json()
    assert [e["attributes"]["action"] for e in listed["data"]] == ["auth.login"]
    assert_error(client.get('/v1/audit-events?filter=[{"name":"ip","op":"like","val":"%"}]', headers=headers), 400)
    assert_error(call(client, "DELETE", f"/v1/audit-events/{listed['data'][0]['id']}", headers), 405)
    assert_error(call(client, "POST", "/v1/audit-events", headers, resource("audit-events", {"action": "x"})), 405)
