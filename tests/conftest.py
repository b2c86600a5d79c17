"""Fixtures: a fresh app and empty tables per test, factories that default to the least
privileged user, and a guard that fails any test whose log records contain a secret.

Backends come from the environment, as in production: DATABASE_URL (default: a SQLite file in a
temporary folder) and RATELIMIT_STORAGE_URI (default: memory://). Each test gets its own key
prefix in the limiter storage, so a shared Redis needs no flushing.
"""
import logging
import os
import uuid
from dataclasses import dataclass

import pytest
from flask_jwt_extended import create_access_token, create_refresh_token
from sqlalchemy import text

from app import create_app
from app.extensions import db
from app.models import ApiKey, User
from app.services import lifecycle, sessions
from app.services.passwords import hash_password
from config import TestingConfig

JSONAPI = "application/vnd.api+json"
PASSWORD = "correct horse battery staple"


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
    settings = dict(SQLALCHEMY_DATABASE_URI=database_url, RATELIMIT_STORAGE_URI=storage_uri,
                    RATELIMIT_KEY_PREFIX=f"lktest-{uuid.uuid4().hex[:12]}",
                    RATE_LIMIT_DEFAULTS="100000 per hour")
    settings.update(config_overrides)
    app = create_app(TestingConfig, **settings)
    # No app context stays pushed: each request gets its own context and session, as in production.
    yield app
    with app.app_context():
        for table in reversed(db.metadata.sorted_tables):
            db.session.execute(table.delete())
        db.session.commit()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


class Secrets:
    """Every secret a test handled: none may appear in a log record."""

    def __init__(self):
        self.values = set()

    def add(self, *values):
        self.values.update(v for v in values if v)
        return values[0] if len(values) == 1 else values


@pytest.fixture
def secrets_seen():
    return Secrets()


@pytest.fixture(autouse=True)
def no_secret_in_logs(caplog, secrets_seen):
    caplog.set_level(logging.DEBUG)
    yield
    texts = []
    for record in caplog.records:
        texts.append(record.getMessage())
        if record.exc_info:
            texts.append(logging.Formatter().formatException(record.exc_info))
    joined = "\n".join(texts)
    leaked = [value[:12] + "..." for value in secrets_seen.values if value in joined]
    assert not leaked, f"secrets found in log records: {leaked}"


@dataclass(frozen=True)
class UserRef:
    id: int
    email: str
    is_admin: bool


@dataclass(frozen=True)
class KeyRef:
    id: int
    user_id: int
    secret: str


class Factory:
    """Users, tokens and keys straight through the models: fast, and least privileged by default.

    Each call runs in its own app context and returns plain references, not ORM objects.
    """

    def __init__(self, app, secrets):
        self.app, self.secrets, self.count = app, secrets, 0

    def user(self, email=None, admin=False, password=PASSWORD) -> UserRef:
        self.count += 1
        with self.app.app_context():
            user = User(email=email or f"user{self.count}-{uuid.uuid4().hex[:6]}@example.com",
                        password_hash=hash_password(password), is_admin=admin)
            db.session.add(user)
            db.session.commit()
            self.secrets.add(password, user.password_hash)
            return UserRef(user.id, user.email, user.is_admin)

    def token(self, user, refresh=False, sid=None) -> str:
        """Return a token of a new login session (or of session `sid`)."""
        with self.app.app_context():
            if sid is None:
                sid = sessions.start(user.id)
                db.session.commit()
            create = create_refresh_token if refresh else create_access_token
            return self.secrets.add(create(str(user.id), additional_claims={"sid": sid}))

    def headers(self, user) -> dict:
        return {"Authorization": f"Bearer {self.token(user)}"}

    def key(self, user, scopes=("keys:read",), **attributes) -> KeyRef:
        with self.app.app_context():
            fields = lifecycle.new_secret_fields(self.app.config["API_KEY_PREFIX"])
            key = ApiKey(user_id=user.id, name=attributes.pop("name", "test key"), scopes=list(scopes),
                         **attributes, **fields)
            db.session.add(key)
            db.session.commit()
            self.secrets.add(key.plaintext_secret, key.digest)
            return KeyRef(key.id, key.user_id, key.plaintext_secret)

    def row(self, model, id_) -> dict | None:
        """Return a model row's column values (for 'the row is unchanged' checks), or None."""
        with self.app.app_context():
            obj = db.session.get(model, id_)
            if obj is None:
                return None
            return {column.key: getattr(obj, column.key) for column in model.__mapper__.column_attrs}


@pytest.fixture
def make(app, secrets_seen):
    return Factory(app, secrets_seen)


def resource(type_, attributes=None, id_=None, relationships=None):
    """Return a JSON:API request document."""
    data = {"type": type_, "attributes": attributes or {}}
    if id_ is not None:
        data["id"] = str(id_)
    if relationships:
        data["relationships"] = relationships
    return {"data": data}


def assert_error(response, status, code=None, pointer=None):
    """Assert `response` is a JSON:API error document with `status` (and `code`, `pointer`)."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith(JSONAPI)
    error = response.get_json()["errors"][0]
    assert error["status"] == str(status)
    assert error["title"]
    if code is not None:
        assert error.get("code") == code, error
    if pointer is not None:
        assert error.get("source", {}).get("pointer") == pointer, error
    return error
