"""What must hold across processes: gunicorn with 4 workers sharing one Redis and one database.
Limits, quotas and budgets admit exactly what they allow, usage adds up, revocation spreads.

Skipped unless RATELIMIT_STORAGE_URI (or REDIS_URL) is a redis:// URL, as in `.ci/run`'s second
pass: with memory:// each worker counts alone, which is exactly what these tests would catch.
"""
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import text

from app.extensions import db
from tests.helpers import Seeder, delete_keys
from tests.servers import (
    PrivateRedis,
    fresh_database,
    gunicorn,
    redis_url_or_none,
    run_migrations,
    service_env,
    wait_until,
)

pytestmark = pytest.mark.skipif(redis_url_or_none() is None, reason="needs RATELIMIT_STORAGE_URI=redis://...")

LIMIT = 20
PASSWORD = Seeder.PASSWORD
# A change reaches every worker within KEY_CACHE_SECONDS (1 s): the tests of that deadline wait it out,
# then check every worker at once. Polling instead would not be shorter (a worker catches up at most
# once a second) and each probe would spend the rate limits the checks need.
CACHE_DEADLINE = 1.05


def lock_waits(seeder):
    """How many sessions of the service's PostgreSQL database wait on a lock, leaving out the usage
    flush (its statements, which read its temporary tables, wait on a locked key's row too)."""
    with seeder.app.app_context(), db.engine.connect() as connection:
        return connection.scalar(text("SELECT count(*) FROM pg_stat_activity "
                                      "WHERE datname = current_database() AND wait_event_type = 'Lock' "
                                      "AND query NOT SIMILAR TO '%(latchkey_last_used|latchkey_counts)%'"))


def fire(url, count, headers=None):
    """Send `count` GETs from 16 threads at once; return a Counter of (status, error code)."""
    def one(_):
        response = requests.get(url, headers=headers or {}, timeout=30)
        code = response.json()["errors"][0].get("code") if response.status_code >= 400 else None
        return response.status_code, code

    with ThreadPoolExecutor(16) as pool:
        return Counter(pool.map(one, range(count)))


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with fresh_database(tmp_path_factory.mktemp("proc")) as database_url:
        env = service_env(database_url, redis_url_or_none(), RATE_LIMIT_DEFAULTS=f"{LIMIT} per minute")
        run_migrations(env)
        seeder = Seeder(env)
        try:
            with gunicorn(env, workers=4) as base:
                yield base, seeder
        finally:
            seeder.close()
            delete_keys(env["RATELIMIT_STORAGE_URI"], env["RATELIMIT_KEY_PREFIX"])  # once the workers are gone


def test_user_limit_is_exact_across_workers(service):
    base, seeder = service
    user_id, token = seeder.user("limit-user@example.com")
    result = fire(f"{base}/v1/users/{user_id}", 2 * LIMIT, {"Authorization": f"Bearer {token}"})
    assert result == {(200, None): LIMIT, (429, "RATE_LIMITED"): LIMIT}


def test_key_own_limit_is_exact_across_workers(service):
    base, seeder = service
    user_id, _ = seeder.user("limit-key@example.com")
    secret = seeder.key(user_id, rate_limit="7/minute")
    result = fire(f"{base}/v1/api-keys", LIMIT, {"X-API-Key": secret})  # within the defaults
    assert result == {(200, None): 7, (429, "RATE_LIMITED"): LIMIT - 7}


def test_ip_limit_is_exact_and_authenticated_requests_are_not_in_it(service):
    base, seeder = service
    user_id, token = seeder.user("limit-ip@example.com")
    # A burst of authenticated requests from this address first: they must not touch the IP bucket.
    assert fire(f"{base}/v1/scopes", LIMIT, {"Authorization": f"Bearer {token}"}) == {(200, None): LIMIT}
    assert fire(f"{base}/v1/scopes", 2 * LIMIT) == {(200, None): LIMIT, (429, "RATE_LIMITED"): LIMIT}


def test_quota_is_exact_across_workers(service):
    base, seeder = service
    user_id, _ = seeder.user("quota@example.com")
    secret = seeder.key(user_id, quota_limit=12, quota_period="day")
    result = fire(f"{base}/v1/api-keys", LIMIT, {"X-API-Key": secret})  # within the defaults
    assert result == {(200, None): 12, (429, "QUOTA_EXCEEDED"): LIMIT - 12}


def post_many(url, bodies, headers):
    """POST each body from 16 threads at once; return the JSON answers."""
    def one(body):
        return requests.post(url, json=body, headers=headers, timeout=30).json()

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, bodies))


def spend_budget(service, name, budget, cost, times):
    """Verify a fresh key with a daily `budget`, `times` at `cost`, from 16 threads; count the codes."""
    base, seeder = service
    service_id, _ = seeder.user(f"{name}-service@example.com", admin=True)
    verifier = {"X-API-Key": seeder.key(service_id, scopes=["keys:verify"])}
    owner_id, _ = seeder.user(f"{name}-owner@example.com")
    secret = seeder.key(owner_id, budget_limit=budget, budget_period="day")
    answers = post_many(f"{base}/v1/api-keys/verify", [{"key": secret, "cost": cost}] * times, verifier)
    return Counter(answer["meta"]["code"] for answer in answers)


def test_budget_never_admits_more_than_it_holds(service):
    codes = spend_budget(service, "budget", 100, cost=3, times=60)
    assert codes == {"VALID": 33, "BUDGET_EXCEEDED": 27}  # 33 x 3 = 99 <= 100 < 34 x 3


def test_a_leased_budget_never_admits_more_than_it_holds(service):
    """Far from its limit a budget is leased out to the workers in shares; the total still holds."""
    codes = spend_budget(service, "lease", 3000, cost=1, times=3600)
    # Never more; and as every worker keeps being asked, the shares they held are spent too.
    assert codes == {"VALID": 3000, "BUDGET_EXCEEDED": 600}


def test_usage_adds_up_across_workers(service):
    base, seeder = service
    service_id, _ = seeder.user("usage-service@example.com", admin=True)
    verifier = {"X-API-Key": seeder.key(service_id, scopes=["keys:verify"])}
    owner_id, owner_token = seeder.user("usage-owner@example.com")
    secret = seeder.key(owner_id, scopes=["llm:*"], quota_limit=30, quota_period="day")
    bodies = [{"key": secret, "scopes": ["llm:gpt-4o"], "cost": 2}] * 40 + [{"key": secret, "scopes": ["rag:x"]}] * 5
    codes = Counter(answer["meta"]["code"] for answer in post_many(f"{base}/v1/api-keys/verify", bodies, verifier))
    assert codes == {"VALID": 30, "QUOTA_EXCEEDED": 10, "INSUFFICIENT_SCOPES": 5}
    key_id = seeder.key_id(secret)
    url = f"{base}/v1/api-keys/{key_id}/usage"

    def totals():
        attributes = requests.get(url, headers={"Authorization": f"Bearer {owner_token}"}, timeout=10).json()
        return attributes["data"]["attributes"]["totals"], attributes["data"]["attributes"]["series"]

    # workers flush every USAGE_FLUSH_SECONDS (0.5 s here)
    wait_until(lambda: totals()[0] == dict(codes), 10, f"the usage totals to be {dict(codes)}")
    counts, series = totals()
    assert counts == dict(codes)
    assert sum(point["cost"] for point in series) == 60


def test_revocation_reaches_every_worker_within_one_second(service):
    base, seeder = service
    owner_id, owner_token = seeder.user("revoke@example.com")
    secret = seeder.key(owner_id, scopes=["keys:read"])
    url = f"{base}/v1/users/{owner_id}/relationships/api-keys"
    assert fire(url, 12, {"X-API-Key": secret}) == {(200, None): 12}  # every worker has it cached
    key_id = seeder.key_id(secret)
    revoked = requests.post(f"{base}/v1/api-keys/{key_id}/revoke", headers={"Authorization": f"Bearer {owner_token}"},
                            timeout=10)
    assert revoked.status_code == 200
    time.sleep(CACHE_DEADLINE)  # the deadline under test (see CACHE_DEADLINE)
    assert fire(url, 16, {"X-API-Key": secret}) == {(401, "REVOKED"): 16}


def test_a_password_change_ends_other_sessions_on_every_worker(service):
    base, seeder = service
    user_id, stolen = seeder.user("password@example.com")
    mine = seeder.session(user_id)
    url = f"{base}/v1/users/{user_id}"
    assert fire(url, 8, {"Authorization": f"Bearer {stolen}"}) == {(200, None): 8}  # every worker served it
    document = {"data": {"type": "users", "id": str(user_id),
                         "attributes": {"password": "a brand new passphrase", "current-password": PASSWORD}}}
    changed = requests.patch(url, json=document, timeout=10, headers={
        "Authorization": f"Bearer {mine}", "Content-Type": "application/vnd.api+json"})
    assert changed.status_code == 200, changed.text
    assert fire(url, 12, {"Authorization": f"Bearer {stolen}"}) == {(401, "TOKEN_REVOKED"): 12}  # at once
    assert fire(url, 4, {"Authorization": f"Bearer {mine}"}) == {(200, None): 4}


def test_a_demoted_admins_verification_key_stops_on_every_worker_within_one_second(service):
    base, seeder = service
    admin_id, _ = seeder.user("demoted@example.com", admin=True)
    _, root_token = seeder.user("root@example.com", admin=True)
    verifier = {"X-API-Key": seeder.key(admin_id, scopes=["keys:verify"])}
    checked = seeder.key(seeder.user("checked@example.com")[0])
    url = f"{base}/v1/api-keys/verify"
    assert Counter(a["meta"]["code"] for a in post_many(url, [{"key": checked}] * 12, verifier)) == {"VALID": 12}
    document = {"data": {"type": "users", "id": str(admin_id), "attributes": {"is-admin": False}}}
    demoted = requests.patch(f"{base}/v1/users/{admin_id}", json=document, timeout=10, headers={
        "Authorization": f"Bearer {root_token}", "Content-Type": "application/vnd.api+json"})
    assert demoted.status_code == 200, demoted.text
    time.sleep(CACHE_DEADLINE)  # the deadline under test (see CACHE_DEADLINE)
    answers = post_many(url, [{"key": checked}] * 16, verifier)
    assert Counter(a["errors"][0]["code"] for a in answers if "errors" in a) == {"INSUFFICIENT_SCOPES": 16}


@pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="needs PostgreSQL")
def test_item_1_a_delete_committed_out_of_order_reaches_every_worker(service):
    """Issue 10, item 1: the delete's transaction waits on a row lock while an unrelated audited
    change commits after it began; once the delete commits, every worker refuses the key within
    KEY_CACHE_SECONDS, whatever order the transactions committed in."""
    base, seeder = service
    owner_id, owner_token = seeder.user("out-of-order@example.com")
    owner = {"Authorization": f"Bearer {owner_token}"}
    secret, other = seeder.key(owner_id), seeder.key(owner_id)
    key_id, other_id = seeder.key_id(secret), seeder.key_id(other)
    url = f"{base}/v1/api-keys"  # an endpoint whose IP bucket no other test here fills
    assert fire(url, 8, {"X-API-Key": secret}) == {(200, None): 8}
    with seeder.app.app_context():
        holder = db.engine.connect()
        locked = holder.begin()
        holder.execute(text("SELECT id FROM api_keys WHERE id = :id FOR UPDATE"), {"id": key_id})
        try:
            with ThreadPoolExecutor(1) as pool:
                deleting = pool.submit(requests.delete, f"{base}/v1/api-keys/{key_id}", headers=owner, timeout=30)
                wait_until(lambda: lock_waits(seeder) == 1, 10, "the delete to wait on the row lock")
                assert not deleting.done()  # waiting on the lock, its transaction open
                renamed = requests.patch(f"{base}/v1/api-keys/{other_id}", headers={
                    **owner, "Content-Type": "application/vnd.api+json"}, timeout=10, json={
                    "data": {"type": "api-keys", "id": str(other_id), "attributes": {"name": "renamed"}}})
                assert renamed.status_code == 200
                time.sleep(CACHE_DEADLINE)  # every worker has caught up with the rename (nothing shows it)
                assert fire(url, 8, {"X-API-Key": secret}) == {(200, None): 8}
                locked.commit()
                assert deleting.result().status_code == 200
        finally:
            holder.close()
    time.sleep(CACHE_DEADLINE)  # the deadline under test (see CACHE_DEADLINE)
    assert fire(url, 12, {"X-API-Key": secret}) == {(401, "NOT_FOUND"): 12}


@pytest.mark.parametrize("policy", ["open", "closed"])
def test_redis_outage_then_recovery(tmp_path, policy):
    redis_server = PrivateRedis(tmp_path)
    redis_server.start()
    try:
        with fresh_database(tmp_path) as database_url:
            env = service_env(database_url, redis_server.url, RATE_LIMIT_DEFAULTS="5 per minute",
                              RATELIMIT_ON_STORAGE_ERROR=policy)
            run_migrations(env)
            with gunicorn(env, workers=2) as base:
                url = f"{base}/v1/scopes"
                assert fire(url, 8) == {(200, None): 5, (429, "RATE_LIMITED"): 3}

                redis_server.stop()
                during = fire(url, 6)
                if policy == "open":
                    assert during == {(200, None): 6}  # served, with a warning in the log
                else:
                    assert during == {(503, "LIMITS_UNAVAILABLE"): 6}
                ready = requests.get(f"{base}/readyz", timeout=10)
                assert ready.status_code == 503 and ready.json()["checks"]["rate_limit_storage"] is False

                redis_server.start()  # empty: counting starts again, without a restart of the service
                assert fire(url, 8) == {(200, None): 5, (429, "RATE_LIMITED"): 3}
    finally:
        redis_server.stop()


def test_reservations_across_workers_never_pass_the_budget_and_retried_settlements_count_once(service):
    """Issue 15, item 1: 40 reservations of 50 against a budget of 1,000 from 16 threads on 4 workers:
    exactly 20 are admitted; each is settled at its actual cost twice at once (a retry), on any
    worker: the budget then holds exactly the settled costs, and so does the usage written."""
    base, seeder = service
    admin_id, _ = seeder.user("reserving-service@example.com", admin=True)
    verifier = {"X-API-Key": seeder.key(admin_id, scopes=["keys:verify"])}
    owner_id, _ = seeder.user("reserved@example.com")
    secret = seeder.key(owner_id, scopes=["llm:*"], budget_limit=1000, budget_period="month")
    body = {"key": secret, "scopes": ["llm:gpt-4o"], "cost": 50, "reserve": True}
    answers = post_many(f"{base}/v1/api-keys/verify", [body] * 40, verifier)
    assert Counter(a["meta"]["code"] for a in answers) == {"VALID": 20, "BUDGET_EXCEEDED": 20}
    reserved = [a["meta"]["reservation"]["id"] for a in answers if a["meta"]["code"] == "VALID"]
    actual = {reservation_id: 10 + 2 * n for n, reservation_id in enumerate(reserved)}

    def settle(reservation_id):
        return requests.post(f"{base}/v1/reservations/{reservation_id}/settle", json={"cost": actual[reservation_id]},
                             headers=verifier, timeout=30)

    with ThreadPoolExecutor(16) as pool:
        settled = list(pool.map(settle, [r for r in reserved for _ in range(2)]))
    assert [response.status_code for response in settled] == [200] * 40  # not under RATE_LIMIT_DEFAULTS
    check = post_many(f"{base}/v1/api-keys/verify", [{**body, "cost": 0, "reserve": False}], verifier)[0]
    assert check["meta"]["budget"]["used"] == sum(actual.values())
    key_id = seeder.key_id(secret)

    def written():
        with seeder.app.app_context(), db.engine.connect() as connection:
            return connection.scalar(text("SELECT coalesce(sum(cost), 0) FROM key_usage WHERE key_id = :id"),
                                     {"id": key_id})

    wait_until(lambda: written() == sum(actual.values()), 10, "the settled costs in the usage written")
