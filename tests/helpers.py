"""Plain helpers shared by the test modules (the fixtures that use them are in conftest.py).

- JSON:API documents and errors: `resource`, `assert_error`, `call`.
- Credentials: `bearer`, `key_header`, `login`, `start_session`, `register_secret`.
- The api-keys resource: `create_key`, `patch_key`, `key_count`, `listed_ids`, `dump_database`.
- Users, tokens and keys straight through the models: `Factory` (the `make` fixture), `Seeder`
  (for a service running in other processes).
- Time: `Timeline` (the `timeline` fixture), a monotonic clock that only moves when told.
- The shared Redis: `delete_keys`, what a test app or service wrote under its key prefix.
"""
import math
import re
import time
import uuid
from dataclasses import dataclass

from flask_jwt_extended import create_access_token, create_refresh_token
from sqlalchemy import func, select

from app.extensions import db
from app.fast_path import FastPath
from app.models import ApiKey, User
from app.services import lifecycle, sessions
from app.services.passwords import hash_password

JSONAPI = "application/vnd.api+json"
PASSWORD = "correct horse battery staple"
KEY_RE = re.compile(r"^lk_[0-9A-Za-z]{38}$")


# --- JSON:API --------------------------------------------------------------------------------------

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


def call(client, method, url, headers=None, body=None, **kwargs):
    """Send `body` (a JSON:API document, or None) with the JSON:API media type."""
    return client.open(url, method=method, headers=headers or {}, json=body,
                       content_type=JSONAPI if body is not None else None, **kwargs)


# --- credentials -----------------------------------------------------------------------------------

def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def key_header(secret):
    return {"X-API-Key": secret}


def login(client, email, password, ip="127.0.0.1"):
    return client.post("/v1/auth/login", json={"email": email, "password": password},
                       environ_base={"REMOTE_ADDR": ip})


def start_session(client, user, secrets_seen, password=PASSWORD):
    """Log `user` in through the API; return (access token, refresh token), handed to the log guard."""
    response = login(client, user.email, password)
    assert response.status_code == 200, response.get_data(as_text=True)
    meta = response.get_json()["meta"]
    return secrets_seen.add(meta["access_token"], meta["refresh_token"])


def register_secret(response, secrets):
    """Hand any secret in a response to the log guard; return it (or None)."""
    data = (response.get_json(silent=True) or {}).get("data")
    secret = data.get("attributes", {}).get("secret") if isinstance(data, dict) else None
    secrets.add(secret)
    return secret


# --- the api-keys resource -------------------------------------------------------------------------

def create_key(client, headers, secrets, relationships=None, **attributes):
    """POST /v1/api-keys with `attributes` by their API names (pass dasherized ones as **{"expires-at": ...})."""
    attributes.setdefault("name", "test key")
    document = resource("api-keys", attributes, relationships=relationships)
    response = call(client, "POST", "/v1/api-keys", headers, document)
    register_secret(response, secrets)
    return response


def patch_key(client, headers, key_id, attributes=None, relationships=None):
    return call(client, "PATCH", f"/v1/api-keys/{key_id}", headers,
                resource("api-keys", attributes, id_=key_id, relationships=relationships))


def key_count(app, user_id):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.user_id == user_id))


def listed_ids(client, headers, path="/v1/api-keys"):
    response = client.get(path, headers=headers, query_string={"page[size]": 100})
    assert response.status_code == 200, response.get_data(as_text=True)
    return {int(item["id"]) for item in response.get_json()["data"]}


def dump_database(app) -> str:
    """Every value of every row of every table, as one string."""
    with app.app_context():
        return "\n".join(str(value) for table in db.metadata.sorted_tables
                         for row in db.session.execute(table.select()) for value in row)


def flush_usage(app):
    """Write the usage this process has counted so far."""
    app.extensions["latchkey_usage"].flush()


# --- users, tokens and keys through the models -----------------------------------------------------

class Secrets:
    """Every secret a test handled: none may appear in a log record."""

    def __init__(self):
        self.values = set()

    def add(self, *values):
        self.values.update(v for v in values if v)
        return values[0] if len(values) == 1 else values


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


class Seeder:
    """Users, tokens and keys written straight into the database of a service running in other
    processes (tests/servers.py: `service_env`, `gunicorn`)."""

    PASSWORD = "irrelevant password"

    def __init__(self, env):
        from app import create_app
        from config import TestingConfig

        self.app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=env["DATABASE_URL"],
                              JWT_SECRET_KEY=env["JWT_SECRET_KEY"], RATELIMIT_STORAGE_URI=env["RATELIMIT_STORAGE_URI"])

    def user(self, email, admin=False):
        """Return (user id, an access token of a new session)."""
        with self.app.app_context():
            user = User(email=email, password_hash=hash_password(self.PASSWORD), is_admin=admin)
            db.session.add(user)
            db.session.flush()
            sid = sessions.start(user.id)
            db.session.commit()
            return user.id, create_access_token(str(user.id), additional_claims={"sid": sid})

    def session(self, user_id):
        """Return an access token of a new session of `user_id`."""
        with self.app.app_context():
            sid = sessions.start(user_id)
            db.session.commit()
            return create_access_token(str(user_id), additional_claims={"sid": sid})

    def key(self, user_id, **attributes):
        with self.app.app_context():
            fields = lifecycle.new_secret_fields("lk")
            key = ApiKey(user_id=user_id, name="proc", **{"scopes": ["keys:read"], **attributes}, **fields)
            db.session.add(key)
            db.session.commit()
            return key.plaintext_secret

    def key_id(self, secret):
        from app.services.key_format import hash_secret

        with self.app.app_context():
            return db.session.query(ApiKey.id).filter_by(digest=hash_secret(secret)).scalar()

    def close(self):
        with self.app.app_context():
            db.engine.dispose()


# --- time ------------------------------------------------------------------------------------------

class Timeline:
    """A monotonic clock that stands still until `advance`d: installed as app.services.clock.monotonic
    (the `timeline` fixture), it moves the key cache's and the leases' time exactly, without sleeping.

    It starts at a whole second not before the real monotonic time, so a time read from the real
    clock before it was installed is never in its future, and whole and half seconds add up exactly.
    Redis keeps real time: a TTL set in Redis still runs on the wall clock.
    """

    def __init__(self, start=None):
        self.now = float(math.ceil(time.monotonic())) if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        assert seconds >= 0, "a monotonic clock does not go back"
        self.now += seconds
        return self.now


# --- the shared Redis ------------------------------------------------------------------------------

def delete_keys(storage_uri, prefix):
    """Delete the keys that an app with RATELIMIT_KEY_PREFIX `prefix` wrote to the Redis at
    `storage_uri`: flask-limiter's buckets (LIMITS:LIMITER/<prefix>/...), the quota and budget
    counters and their leases (<prefix>latchkey:...). Nothing, unless `storage_uri` is a Redis.
    The prefix must be unique to the app (as the tests' `lktest-<random>`): any key containing it goes."""
    if not (storage_uri or "").startswith("redis://"):
        return
    assert len(prefix) >= 12, f"not a unique key prefix: {prefix!r}"
    import redis

    client = redis.Redis.from_url(storage_uri)
    try:
        names = list(client.scan_iter(match=f"*{prefix}*", count=1000))
        for start in range(0, len(names), 500):
            client.unlink(*names[start:start + 500])
    finally:
        client.close()


def fast_path_of(app) -> FastPath:
    """The app's fast path (app/fast_path.py), under its outer WSGI layers."""
    layer = app.wsgi_app
    while not isinstance(layer, FastPath):
        layer = layer.app  # SlashlessPaths, BodyLimit, ProxyFix
    return layer
