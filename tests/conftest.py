"""Fixtures: a fresh app and empty tables per test, factories that default to the least
privileged user, a guard that fails any test whose log records contain a secret, and a clock that
moves only when told. Plain helpers are in tests/helpers.py.

Backends come from the environment, as in production: DATABASE_URL (default: a SQLite file in a
temporary folder) and RATELIMIT_STORAGE_URI (default: memory://). Each test app gets its own key
prefix in the limiter storage, so a shared Redis needs no flushing; on Redis, what a test app
wrote under its prefix is deleted when the test ends.
"""
import logging
import os
import uuid

import pytest
from sqlalchemy import text

from app import create_app
from app.extensions import db
from app.services import clock
from config import TestingConfig

# Test modules used to import these from here; they stay importable from here.
from tests.helpers import (  # noqa: F401
    JSONAPI,
    PASSWORD,
    Factory,
    KeyRef,
    Secrets,
    Timeline,
    UserRef,
    assert_error,
    delete_keys,
    fast_path_of,
    resource,
)

# Every JSON:API answer the test client gets is checked against the JSON:API 1.0 schema; the
# console's browser tests share a live server and a Chromium (tests/console_helpers.py).
pytest_plugins = ["tests.jsonapi_conformance", "tests.console_helpers"]


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    return os.environ.get("DATABASE_URL") or f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


@pytest.fixture(scope="session")
def storage_uri():
    return os.environ.get("RATELIMIT_STORAGE_URI") or os.environ.get("REDIS_URL") or "memory://"


@pytest.fixture(scope="session")
def _schema(database_url, storage_uri):
    """Create the tables once per run, from the models (the migrations have their own tests)."""
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=database_url, RATELIMIT_STORAGE_URI=storage_uri)
    with app.app_context():
        db.drop_all()
        with db.engine.begin() as connection:
            connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
        db.create_all()
    yield
    with app.app_context():
        db.drop_all()
        db.engine.dispose()


@pytest.fixture
def config_overrides():
    """Override to change the app's configuration for one test module or test."""
    return {}


@pytest.fixture
def app(_schema, database_url, storage_uri, config_overrides):
    prefix = f"lktest-{uuid.uuid4().hex[:12]}"
    settings = dict(SQLALCHEMY_DATABASE_URI=database_url, RATELIMIT_STORAGE_URI=storage_uri,
                    RATELIMIT_KEY_PREFIX=prefix, RATE_LIMIT_DEFAULTS="100000 per hour")
    settings.update(config_overrides)
    app = create_app(TestingConfig, **settings)
    # No app context stays pushed: each request gets its own context and session, as in production.
    yield app
    if (app.config["RATELIMIT_STORAGE_URI"], app.config["RATELIMIT_KEY_PREFIX"]) == (storage_uri, prefix):
        delete_keys(storage_uri, prefix)  # on the shared Redis, if any: what this test's app wrote
    with app.app_context():
        for table in reversed(db.metadata.sorted_tables):
            db.session.execute(table.delete())
        db.session.commit()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def secrets_seen():
    return Secrets()


@pytest.fixture(autouse=True)
def no_secret_in_logs(caplog, secrets_seen):
    caplog.set_level(logging.DEBUG)
    yield
    texts = []
    # At teardown caplog.records holds the teardown's records only: read every phase's.
    records = caplog.get_records("setup") + caplog.get_records("call") + caplog.records
    for record in records:
        texts.append(record.getMessage())
        if record.exc_info:
            texts.append(logging.Formatter().formatException(record.exc_info))
    joined = "\n".join(texts)
    leaked = [value[:12] + "..." for value in secrets_seen.values if value in joined]
    assert not leaked, f"secrets found in log records: {leaked}"


@pytest.fixture
def make(app, secrets_seen):
    return Factory(app, secrets_seen)


@pytest.fixture
def verifier(make):
    """Headers of a service: a key with keys:verify, owned by an admin's service account."""
    account = make.user(admin=True)
    return {"X-API-Key": make.key(account, scopes=["keys:verify"]).secret}


@pytest.fixture
def timeline(monkeypatch):
    """The monotonic clock of the key cache and the leases (app/services/clock.py), standing still
    until the test calls `timeline.advance(seconds)`."""
    fake = Timeline()
    monkeypatch.setattr(clock, "monotonic", fake)
    return fake


@pytest.fixture
def passed_on(app, monkeypatch):
    """Count the requests the fast path passes on to Flask."""
    calls = []
    layer = fast_path_of(app)
    flask_app = layer.wsgi_app

    def counted(environ, start_response):
        calls.append(1)
        return flask_app(environ, start_response)

    monkeypatch.setattr(layer, "wsgi_app", counted)
    return calls
