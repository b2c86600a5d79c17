"""Latchkey: API key management as a Flask JSON:API service."""
import json
import logging
import os
import secrets
from pathlib import Path

from flask import Flask
from limits import parse_many
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Config

log = logging.getLogger(__name__)


def create_app(config_class=Config, **overrides):
    """Return a configured application: `config_class`, then keyword `overrides`."""
    app = Flask(__name__, instance_relative_config=True, static_folder=None)
    app.config.from_object(config_class)
    app.config.update(overrides)
    os.makedirs(app.instance_path, mode=0o700, exist_ok=True)  # private: secrets, the SQLite database
    _configure_secrets(app)
    _configure_database(app)
    _configure_rate_limits(app)

    from app import extensions, models  # noqa: F401  (models register their tables)
    from app.api import api, health, verify
    from app.api.helpers import errors, ratelimit
    from app.api.helpers import requests as request_helpers
    from app.services import usage

    extensions.db.init_app(app)
    extensions.migrate.init_app(app, extensions.db, directory=str(Path(__file__).parent.parent / "migrations"),
                                render_as_batch=True, compare_type=True)
    extensions.jwt.init_app(app)
    if app.config["CORS_ORIGINS"]:
        extensions.cors.init_app(app, resources={r"/v1/*": {"origins": app.config["CORS_ORIGINS"]}},
                                 supports_credentials=False)
    api.init_app(app)
    app.register_blueprint(health.bp)
    ratelimit.init_app(app, exempt_blueprints=[health.bp])  # after the routes it refers to
    errors.init_app(app)
    usage.init_app(app)
    verify.init_app(app)  # the verification fast path, in front of Flask
    request_helpers.init_app(app)  # MAX_CONTENT_LENGTH, in front of the fast path too; strict JSON bodies
    if app.config["TRUSTED_PROXIES"] > 0:  # outermost: every layer sees the client's address
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    from app import cli

    cli.init_app(app)
    return app


def _configure_secrets(app):
    """Require SECRET_KEY and JWT_SECRET_KEY in production; in development generate them once into
    instance/secrets.json, which every worker then reads.

    Workers boot at the same time: the file is written only under an exclusive lock (flock on
    secrets.json.lock), to a temporary file that is 0600 from its creation, then renamed into place.
    A worker reads no file or a whole one, never a half-written one, and all of them agree.
    """
    missing = [name for name in ("SECRET_KEY", "JWT_SECRET_KEY") if not app.config.get(name)]
    if not missing:
        return
    if app.config["ENV_NAME"] == "production":
        raise RuntimeError(f"Refusing to start in production without {', '.join(missing)} set.")
    path = Path(app.instance_path) / "secrets.json"

    def read():
        try:
            stored = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            stored = None
        if not isinstance(stored, dict):
            raise RuntimeError(f"{path} is not a JSON object: delete it to generate new development secrets.")
        try:
            if os.stat(path).st_mode & 0o077:  # written by an older version: make it private
                os.chmod(path, 0o600)
        except OSError:
            pass  # not ours to change
        return stored

    stored = read()
    if any(name not in stored for name in missing):
        import fcntl

        lock = os.open(path.with_name("secrets.json.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            stored = read()  # another worker may have written them while this one waited
            absent = [name for name in missing if name not in stored]
            if absent:
                stored.update({name: secrets.token_urlsafe(48) for name in absent})
                temporary = path.with_name("secrets.json.tmp")
                temporary.unlink(missing_ok=True)  # left by a crash; only lock holders write it
                with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
                    json.dump(stored, file)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, path)
        finally:
            os.close(lock)  # and with it the lock
    for name in missing:
        app.config[name] = stored[name]


def _configure_database(app):
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{Path(app.instance_path) / 'latchkey.db'}"
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("sqlite:"):
        from sqlalchemy.engine import make_url

        database = make_url(uri).database
        if database and database != ":memory:" and not database.startswith("file:"):
            # Password hashes live there: the owner's only, from the file's creation (SQLite gives
            # its journals the database's mode); one made by an older version is made private.
            try:
                os.close(os.open(database, os.O_RDWR | os.O_CREAT, 0o600))
                if os.stat(database).st_mode & 0o077:
                    os.chmod(database, 0o600)
            except OSError:
                pass  # a folder that does not exist, or a file not ours: SQLite reports it on connect
    if uri.startswith(("postgres://", "postgresql://")):  # psycopg 3, not psycopg2
        app.config["SQLALCHEMY_DATABASE_URI"] = uri = "postgresql+psycopg://" + uri.split("://", 1)[1]
    if uri.startswith("postgresql+psycopg://"):
        # A hung PostgreSQL costs at most these (see app/services/breaker.py): connecting, waiting
        # for a pooled connection, the pool's pre-ping (DATABASE_CONNECT_TIMEOUT each), and each
        # round trip (the server's statement_timeout, and a client-side deadline for when the server
        # is too hung to enforce it). DATABASE_STATEMENT_TIMEOUT_MS=0: neither of the last two.
        import math

        from sqlalchemy.engine import make_url

        from app.services.breaker import DEADLINE_ARG, DEADLINE_MARGIN, PING_DEADLINE_ARG

        connect_seconds = float(app.config["DATABASE_CONNECT_TIMEOUT"])
        statement_ms = int(app.config["DATABASE_STATEMENT_TIMEOUT_MS"])
        in_url = make_url(uri).query  # connect_args replace the URL's parameters of the same name
        options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})  # the class's dict is shared
        connect_args = dict(options.get("connect_args") or {})
        if "connect_timeout" not in in_url:
            connect_args.setdefault("connect_timeout", max(math.ceil(connect_seconds), 1))  # whole s; libpq: >= 2
        connect_args[PING_DEADLINE_ARG] = connect_seconds  # a pre-ping is a liveness check, like a connect
        if statement_ms > 0:
            given = connect_args.get("options", in_url.get("options", ""))
            connect_args["options"] = f"{given} -c statement_timeout={statement_ms}".strip()
            connect_args[DEADLINE_ARG] = statement_ms / 1000 + DEADLINE_MARGIN
            connect_args[PING_DEADLINE_ARG] = min(connect_seconds, connect_args[DEADLINE_ARG])
        options["connect_args"] = connect_args
        options.setdefault("pool_timeout", connect_seconds)
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options


def _configure_rate_limits(app):
    """Refuse to start on a rate limit or storage policy that cannot be parsed, with a clear message."""
    for name in ("RATE_LIMIT_DEFAULTS", "RATE_LIMIT_LOGIN", "RATE_LIMIT_SIGNUP", "RATE_LIMIT_ACCOUNT_CHANGE",
                 "RATE_LIMIT_AUTH_FAILURES"):
        try:
            parse_many(app.config[name])
        except ValueError:
            raise RuntimeError(
                f"{name}={app.config[name]!r} is not a valid rate limit; use e.g. "
                "'200 per minute;5000 per hour'") from None
    if app.config["RATELIMIT_ON_STORAGE_ERROR"] not in ("open", "closed"):
        raise RuntimeError("RATELIMIT_ON_STORAGE_ERROR must be 'open' or 'closed'.")
    if app.config["RATELIMIT_STORAGE_URI"].startswith("memory://"):
        log.warning("Rate limits are kept in memory: they hold for one process only. "
                    "Set REDIS_URL or RATELIMIT_STORAGE_URI when running several workers or hosts.")
