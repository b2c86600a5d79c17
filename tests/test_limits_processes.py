"""Limits that hold exactly across processes: gunicorn with 4 workers sharing one Redis.

Skipped unless RATELIMIT_STORAGE_URI (or REDIS_URL) is a redis:// URL, as in `.ci/run`'s second
pass: with memory:// each worker counts alone, which is exactly what these tests would catch.
"""
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from app import create_app
from app.extensions import db
from app.models import ApiKey, User
from app.services import lifecycle
from app.services.passwords import hash_password
from config import TestingConfig
from tests.servers import PrivateRedis, fresh_database, gunicorn, redis_url_or_none, run_migrations, service_env

pytestmark = pytest.mark.skipif(redis_url_or_none() is None, reason="needs RATELIMIT_STORAGE_URI=redis://...")

LIMIT = 20


class Seeder:
    """Creates users, tokens and keys directly in the service's database."""

    def __init__(self, env):
        self.app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=env["DATABASE_URL"],
                              JWT_SECRET_KEY=env["JWT_SECRET_KEY"], RATELIMIT_STORAGE_URI=env["RATELIMIT_STORAGE_URI"])

    def user(self, email):
        with self.app.app_context():
            user = User(email=email, password_hash=hash_password("irrelevant password"))
            db.session.add(user)
            db.session.commit()
            from flask_jwt_extended import create_access_token

            return user.id, create_access_token(str(user.id), additional_claims={"sid": f"s{user.id}"})

    def key(self, user_id, **attributes):
        with self.app.app_context():
            fields = lifecycle.new_secret_fields("lk")
            key = ApiKey(user_id=user_id, name="proc", scopes=["keys:read"], **attributes, **fields)
            db.session.add(key)
            db.session.commit()
            return key.plaintext_secret

    def close(self):
        with self.app.app_context():
            db.engine.dispose()


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
        with gunicorn(env, workers=4) as base:
            yield base, seeder
        seeder.close()


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
