"""Latchkey: API key management as a Flask JSON:API service."""
import logging
import os
from pathlib import Path

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from limits import parse_many
from werkzeug.middleware.proxy_fix import ProxyFix

from app.services import breaker, dev_secrets
from config import Config

log = logging.getLogger(__name__)


def create_app(config_class=Config, **overrides):
    """Return a configured application: `config_class`, then keyword `overrides`."""
    app = Flask(__name__, instance_relative_config=True, static_folder=None)
    app.session_interface = NoCookieSessions()
    app.config.from_object(config_class)
    app.config.update(overrides)
    os.makedirs(app.instance_path, mode=0o700, exist_ok=True)  # private: secrets, the SQLite database
    _configure_secrets(app)
    _configure_database(app)
    _configure_rate_limits(app)
    _check_key_prefix(app)

    from app import console, docs, extensions, gateway, models  # noqa: F401  (models register their tables)
    from app.api import api, health, jwks, verify
    from app.api.helpers import cors, errors, ratelimit
    from app.api.helpers import requests as request_helpers
    from app.fast_path import FastPath
    from app.services import key_cache, usage

    extensions.db.init_app(app)
    extensions.migrate.init_app(app, extensions.db, directory=str(Path(__file__).parent.parent / "migrations"),
                                render_as_batch=True, compare_type=True)
    extensions.jwt.init_app(app)
    cors.init_app(app)
    api.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(jwks.bp)  # /.well-known/jwks.json: the keys of signed verification tokens
    app.register_blueprint(docs.bp)  # /docs/: the OpenAPI document for people
    app.register_blueprint(console.bp)  # /console/: the browser console, a client of /v1
    # after the routes it refers to; static pages and probes hold no data worth a limit
    ratelimit.init_app(app, exempt_blueprints=[health.bp, docs.bp, console.bp, gateway.bp])
    gateway.init_app(app)  # /llm/v1: the LLM gateway, which counts its keys' limits itself
    errors.init_app(app)
    usage.init_app(app)
    key_cache.init_app(app)
    verify.init_app(app)
    # the fast path, in front of Flask: the verification's door and the gateway's
    app.wsgi_app = FastPath(app, app.wsgi_app, {verify.PATH: verify.DOOR, **gateway.DOORS})
    request_helpers.init_app(app)  # MAX_CONTENT_LENGTH and /v1 paths' trailing slash, in front of the fast path too
    if app.config["TRUSTED_PROXIES"] > 0:  # outermost: every layer sees the client's address
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    from app import cli

    cli.init_app(app)
    return app


class NoCookieSessions(SecureCookieSessionInterface):
    """Latchkey keeps no state in cookies (JWTs and API keys carry the caller): Flask's session is
    never opened, which spares every request a signing serializer, and writing to it is an error."""

    def open_session(self, app, request):
        return None  # Flask then uses a NullSession, which refuses writes


def _configure_secrets(app):
    """Require SECRET_KEY and JWT_SECRET_KEY in production; in development generate them once into
    instance/secrets.json, which every worker then reads (app/services/dev_secrets.py)."""
    missing = [name for name in ("SECRET_KEY", "JWT_SECRET_KEY") if not app.config.get(name)]
    if not missing:
        return
    if app.config["ENV_NAME"] == "production":
        raise RuntimeError(f"Refusing to start in production without {', '.join(missing)} set.")
    app.config.update(dev_secrets.load_or_create(Path(app.instance_path) / "secrets.json", missing))


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
    if uri.startswith("postgresql+psycopg://"):  # a hung PostgreSQL costs at most its timeouts
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = breaker.postgres_engine_options(app.config, uri)


def _check_key_prefix(app):
    """Refuse to start on an API_KEY_PREFIX that keys could not carry (it is stored in `start`)."""
    from app.services.key_format import PREFIX_RE

    if not PREFIX_RE.fullmatch(app.config["API_KEY_PREFIX"]):
        raise RuntimeError(f"API_KEY_PREFIX={app.config['API_KEY_PREFIX']!r} is not a valid key prefix: use 1 to 16 "
                           "lower-case letters and digits, starting with a letter (e.g. 'lk').")


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
