"""Reservations (issue 15, item 1): a verification with `"reserve": true` charges its estimate, then
the caller settles the actual cost or releases it (app/services/reservations.py).

Runs on the suite's limiter storage: memory:// in the first pass, Redis in CI's second (the Lua
script); tests/test_processes.py holds the 4-worker test on Redis.
"""
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import KeyUsage
from app.services import reservations
from tests.conftest import assert_error

URL = "/v1/api-keys/verify"


@pytest.fixture
def key(make):
    return make.key(make.user(), scopes=["llm:*"], budget_limit=1000, budget_period="month")


def verify(client, verifier, secret, **fields):
    response = client.post(URL, json={"key": secret, "scopes": ["llm:gpt-4o"], **fields}, headers=verifier)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["meta"]


def reserve(client, verifier, secret, estimate):
    meta = verify(client, verifier, secret, cost=estimate, reserve=True)
    assert meta["code"] == "VALID", meta
    return meta["reservation"]["id"]


def settle(client, verifier, reservation_id, cost):
    return client.post(f"/v1/reservations/{reservation_id}/settle", json={"cost": cost}, headers=verifier)


def release(client, verifier, reservation_id):
    return client.post(f"/v1/reservations/{reservation_id}/release", headers=verifier)


def budget_used(client, verifier, secret) -> int:
    return verify(client, verifier, secret, cost=0)["budget"]["used"]


def cost_counted(app, key_id) -> int:
    app.extensions["latchkey_usage"].flush()
    with app.app_context():
        return db.session.scalar(select(func.coalesce(func.sum(KeyUsage.cost), 0)).where(KeyUsage.key_id == key_id))


def test_a_reservation_charges_its_estimate_and_settling_charges_the_actual_cost(app, client, verifier, key):
    meta = verify(client, verifier, key.secret, cost=300, reserve=True)
    reservation = meta["reservation"]
    assert set(reservation) == {"id", "estimate", "expires-at"} and reservation["estimate"] == 300
    assert reservation["id"].startswith("rsv_") and meta["budget"]["used"] == 300
    settled = settle(client, verifier, reservation["id"], 120)
    assert settled.status_code == 200
    assert settled.get_json()["meta"] == {"reservation": {"id": reservation["id"], "state": "settled",
                                                          "estimate": 300, "cost": 120}}
    assert budget_used(client, verifier, key.secret) == 120
    assert cost_counted(app, key.id) == 120


def test_an_actual_cost_above_the_estimate_is_charged_even_past_the_budget(client, verifier, key):
    reservation_id = reserve(client, verifier, key.secret, 900)
    assert settle(client, verifier, reservation_id, 1500).status_code == 200  # spent: recorded
    assert budget_used(client, verifier, key.secret) == 1500
    assert verify(client, verifier, key.secret, cost=1)["code"] == "BUDGET_EXCEEDED"


def test_a_reservation_never_goes_past_the_budget(client, verifier, key):
    reserve(client, verifier, key.secret, 800)
    assert verify(client, verifier, key.secret, cost=300, reserve=True)["code"] == "BUDGET_EXCEEDED"


def test_releasing_gives_the_whole_estimate_back(app, client, verifier, key):
    reservation_id = reserve(client, verifier, key.secret, 400)
    response = release(client, verifier, reservation_id)
    assert response.status_code == 200
    assert response.get_json()["meta"]["reservation"] == {"id": reservation_id, "state": "released",
                                                          "estimate": 400, "cost": 0}
    assert budget_used(client, verifier, key.secret) == 0 and cost_counted(app, key.id) == 0


def test_settling_again_the_same_way_changes_nothing_and_another_way_is_a_conflict(app, client, verifier, key):
    reservation_id = reserve(client, verifier, key.secret, 300)
    first, again = settle(client, verifier, reservation_id, 50), settle(client, verifier, reservation_id, 50)
    assert first.status_code == again.status_code == 200 and first.get_json() == again.get_json()
    assert budget_used(client, verifier, key.secret) == 50 and cost_counted(app, key.id) == 50
    assert_error(settle(client, verifier, reservation_id, 60), 409, "RESERVATION_FINISHED")
    assert_error(release(client, verifier, reservation_id), 409, "RESERVATION_FINISHED")
    released = reserve(client, verifier, key.secret, 10)
    assert release(client, verifier, released).status_code == release(client, verifier, released).status_code == 200
    assert_error(settle(client, verifier, released, 10), 409, "RESERVATION_FINISHED")
    assert budget_used(client, verifier, key.secret) == 50


def test_an_expired_reservation_stays_charged_at_its_estimate(client, verifier, key, monkeypatch):
    reservation_id = reserve(client, verifier, key.secret, 250)
    later = reservations.time.time() + 901  # past RESERVATION_TTL_SECONDS (900)
    monkeypatch.setattr(reservations.time, "time", lambda: later)
    assert_error(settle(client, verifier, reservation_id, 10), 409, "RESERVATION_EXPIRED")
    assert_error(release(client, verifier, reservation_id), 409, "RESERVATION_EXPIRED")
    assert budget_used(client, verifier, key.secret) == 250


def test_only_the_caller_that_reserved_may_finish_it(client, make, verifier, key):
    reservation_id = reserve(client, verifier, key.secret, 100)
    other_service = {"X-API-Key": make.key(make.user(admin=True), scopes=["keys:verify"]).secret}
    admin = make.user(admin=True)
    assert_error(settle(client, other_service, reservation_id, 1), 404, "RESERVATION_NOT_FOUND")
    assert_error(release(client, {"Authorization": f"Bearer {make.token(admin)}"}, reservation_id), 404,
                 "RESERVATION_NOT_FOUND")
    assert_error(settle(client, {}, reservation_id, 1), 401)
    without_scope = {"X-API-Key": make.key(make.user(admin=True), scopes=["keys:read"]).secret}
    assert_error(settle(client, without_scope, reservation_id, 1), 403, "INSUFFICIENT_SCOPES")
    not_admin = {"Authorization": f"Bearer {make.token(make.user())}"}
    assert_error(release(client, not_admin, reservation_id), 403, "INSUFFICIENT_SCOPES")
    assert budget_used(client, verifier, key.secret) == 100  # nothing of that reached it
    assert settle(client, verifier, reservation_id, 1).status_code == 200


def test_an_admin_session_reserves_and_settles_its_own(client, make, key):
    admin = {"Authorization": f"Bearer {make.token(make.user(admin=True))}"}
    reservation_id = reserve(client, admin, key.secret, 70)
    assert settle(client, admin, reservation_id, 20).status_code == 200
    assert budget_used(client, admin, key.secret) == 20


def test_a_key_without_a_budget_settles_its_usage_only(app, client, make, verifier):
    plain = make.key(make.user(), scopes=["llm:*"])
    reservation_id = reserve(client, verifier, plain.secret, 40)
    assert settle(client, verifier, reservation_id, 15).status_code == 200
    assert cost_counted(app, plain.id) == 15


@pytest.mark.parametrize("path", ["rsv_unknown", "x" * 65])
def test_unknown_reservations_are_404(client, verifier, path):
    assert_error(settle(client, verifier, path, 1), 404, "RESERVATION_NOT_FOUND")


@pytest.mark.parametrize("body", [{}, {"cost": -1}, {"cost": 1.5}, {"cost": True}, {"cost": "3"}])
def test_a_settlement_needs_a_whole_cost(client, verifier, key, body):
    reservation_id = reserve(client, verifier, key.secret, 5)
    response = client.post(f"/v1/reservations/{reservation_id}/settle", json=body, headers=verifier)
    assert_error(response, 422)


def test_reserve_is_a_boolean_and_refused_verifications_reserve_nothing(client, verifier, key, make):
    response = client.post(URL, json={"key": key.secret, "reserve": "yes"}, headers=verifier)
    assert_error(response, 422)
    revoked = make.key(make.user(), scopes=["llm:*"], status="revoked")
    meta = verify(client, verifier, revoked.secret, cost=5, reserve=True)
    assert meta["code"] == "REVOKED" and "reservation" not in meta


def test_a_demoted_admins_verifying_key_can_no_longer_finish_its_reservations(client, make, key):
    """keys:verify works only while the key's owner is an admin, for settlements as for verifications."""
    account = make.user(admin=True)
    own = {"X-API-Key": make.key(account, scopes=["keys:verify"]).secret}
    reservation_id = reserve(client, own, key.secret, 100)
    root = make.headers(make.user(admin=True))
    demoted = client.patch(f"/v1/users/{account.id}", headers={**root, "Content-Type": "application/vnd.api+json"},
                           json={"data": {"type": "users", "id": str(account.id), "attributes": {"is-admin": False}}})
    assert demoted.status_code == 200, demoted.get_json()
    assert_error(settle(client, own, reservation_id, 10), 403, "INSUFFICIENT_SCOPES")
    assert_error(release(client, own, reservation_id), 403, "INSUFFICIENT_SCOPES")


def test_the_memory_backend_forgets_a_reservation_a_day_after_it_expired(monkeypatch):
    now = [1_000_000.0]
    monkeypatch.setattr(reservations.time, "time", lambda: now[0])
    kept = reservations.Reservations(counters=None, ttl=60)  # not Redis: the in-memory backend
    hour = datetime(2026, 1, 1, tzinfo=UTC)
    first = kept.reserve(1, 10, None, hour, "caller")
    now[0] += 60 + reservations.KEPT_AFTER_EXPIRY - 1
    second = kept.reserve(1, 10, None, hour, "caller")
    assert kept.finish(first.id, "caller", 5)[0].state == reservations.EXPIRED  # still readable
    now[0] += 2
    kept.reserve(1, 10, None, hour, "caller")  # drops what expired more than a day ago
    assert kept.finish(first.id, "caller", 5)[0].state == reservations.MISSING
    assert kept.finish(second.id, "caller", 5)[0].state == reservations.SETTLED
