"""Configuration, read from the environment (see the table in README.md).

One `Config` for every deployment; `TestingConfig` only changes what a test run needs.
"""
import os
from datetime import timedelta


def _env_int(name, default):
    return int(os.environ.get(name, default))


def _env_list(name):
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


class Config:
    ENV_NAME = os.environ.get("LATCHKEY_ENV", "development")  # development | production

    # Secrets: required in production; in development generated once under instance/.
    SECRET_KEY = os.environ.get("SECRET_KEY")
    JWT_SECRET_KEY = os.environ.get("JWT_SECRET_KEY")

    # None means: a SQLite file under instance/ (resolved by create_app).
    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL")
    # Bound parameters (digests, hashes) never appear in SQLAlchemy error messages or logs.
    SQLALCHEMY_ENGINE_OPTIONS = {"hide_parameters": True, "pool_pre_ping": True}
    # A hung database costs at most these (PostgreSQL; applied by create_app).
    DATABASE_CONNECT_TIMEOUT = float(os.environ.get("DATABASE_CONNECT_TIMEOUT", 2))  # seconds
    DATABASE_STATEMENT_TIMEOUT_MS = _env_int("DATABASE_STATEMENT_TIMEOUT_MS", 5000)

    REDIS_URL = os.environ.get("REDIS_URL")
    # A hung Redis costs at most these per call; after a failure, calls are skipped (the storage
    # error policy applies at once) until REDIS_RETRY_SECONDS have passed.
    REDIS_SOCKET_TIMEOUT = float(os.environ.get("REDIS_SOCKET_TIMEOUT", 0.1))  # seconds
    REDIS_CONNECT_TIMEOUT = float(os.environ.get("REDIS_CONNECT_TIMEOUT", 0.1))  # seconds
    REDIS_RETRY_SECONDS = float(os.environ.get("REDIS_RETRY_SECONDS", 1))

    # Request bodies larger than this are refused with 413 before they are read.
    MAX_CONTENT_LENGTH = _env_int("MAX_CONTENT_LENGTH", 1024 * 1024)

    JWT_ALGORITHM = "HS256"
    JWT_DECODE_ALGORITHMS = ["HS256"]
    JWT_TOKEN_LOCATION = ["headers"]
    JWT_ACCESS_TOKEN_EXPIRES = timedelta(seconds=_env_int("JWT_ACCESS_TOKEN_SECONDS", 900))
    JWT_REFRESH_TOKEN_EXPIRES = timedelta(seconds=_env_int("JWT_REFRESH_TOKEN_SECONDS", 30 * 86400))

    # Rate limiting (flask-limiter). Storage defaults to REDIS_URL, else memory:// (one process).
    RATE_LIMIT_DEFAULTS = os.environ.get("RATE_LIMIT_DEFAULTS", "200 per minute;5000 per hour")
    RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI") or REDIS_URL or "memory://"
    # What happens when the limiter storage is unreachable: "open" (serve, log a warning)
    # or "closed" (answer 503).
    RATELIMIT_ON_STORAGE_ERROR = os.environ.get("RATELIMIT_ON_STORAGE_ERROR", "open")
    # Namespace for every key Latchkey writes to the limiter storage (several deployments, one Redis).
    RATELIMIT_KEY_PREFIX = os.environ.get("RATELIMIT_KEY_PREFIX", "")
    RATE_LIMIT_LOGIN = os.environ.get("RATE_LIMIT_LOGIN", "10 per minute;100 per hour")
    RATE_LIMIT_SIGNUP = os.environ.get("RATE_LIMIT_SIGNUP", "10 per hour")
    # Password and email changes, per account: bounds guessing the current password with a stolen
    # session, and probing which emails are taken.
    RATE_LIMIT_ACCOUNT_CHANGE = os.environ.get("RATE_LIMIT_ACCOUNT_CHANGE", "10 per hour")
    # Failed authentication on the verification endpoint, per client IP (authenticated services
    # with keys:verify are never limited there: they answer for their own callers).
    RATE_LIMIT_AUTH_FAILURES = os.environ.get("RATE_LIMIT_AUTH_FAILURES", "60 per minute")

    CORS_ORIGINS = _env_list("CORS_ORIGINS")
    # How long a browser may reuse a preflight's answer (Chromium caps it at 7200 seconds).
    CORS_MAX_AGE = _env_int("CORS_MAX_AGE", 600)
    TRUSTED_PROXIES = _env_int("TRUSTED_PROXIES", 0)

    PASSWORD_MIN_LENGTH = _env_int("PASSWORD_MIN_LENGTH", 12)
    # argon2id parameters (RFC 9106 second recommended option by default).
    ARGON2_TIME_COST = _env_int("ARGON2_TIME_COST", 3)
    ARGON2_MEMORY_COST = _env_int("ARGON2_MEMORY_COST", 65536)

    API_KEY_PREFIX = os.environ.get("API_KEY_PREFIX", "lk")
    API_KEY_MAX_PER_USER = _env_int("API_KEY_MAX_PER_USER", 100)
    API_KEY_MAX_LIFETIME_DAYS = _env_int("API_KEY_MAX_LIFETIME_DAYS", 730)
    API_KEY_MAX_GRACE_SECONDS = _env_int("API_KEY_MAX_GRACE_SECONDS", 7 * 86400)
    # How often buffered last-used times and usage counters are written to the database.
    USAGE_FLUSH_SECONDS = float(os.environ.get("USAGE_FLUSH_SECONDS", 2))
    # Usage counter rows a worker keeps through failed flushes; beyond it the oldest hours are dropped (logged).
    USAGE_MAX_PENDING_ROWS = _env_int("USAGE_MAX_PENDING_ROWS", 100_000)
    # How long a worker may serve a cached key record before re-checking its version.
    KEY_CACHE_SECONDS = float(os.environ.get("KEY_CACHE_SECONDS", 1))
    # Signed verification tokens (`"token": true` on POST /v1/api-keys/verify): their lifetime, which
    # is also how long a revoked key's tokens may still be accepted offline, and their `iss` claim.
    VERIFY_TOKEN_SECONDS = _env_int("VERIFY_TOKEN_SECONDS", 300)
    VERIFY_TOKEN_ISSUER = os.environ.get("VERIFY_TOKEN_ISSUER", "latchkey")
    # Reservations (`"reserve": true` on POST /v1/api-keys/verify): how long one waits to be settled
    # before it expires, charged at its estimate (app/services/reservations.py).
    RESERVATION_TTL_SECONDS = _env_int("RESERVATION_TTL_SECONDS", 900)
    # The LLM gateway's providers and models (app/gateway/providers.py): a TOML file; none: no models.
    LLM_PROVIDERS_FILE = os.environ.get("LLM_PROVIDERS_FILE", "")

    PAGE_SIZE = 30
    MAX_PAGE_SIZE = 100
    ALLOW_DISABLE_PAGINATION = False
    MAX_INCLUDE_DEPTH = 1


class TestingConfig(Config):
    TESTING = True
    ENV_NAME = "development"
    SECRET_KEY = "test-secret-key-not-for-production-0123456789"
    JWT_SECRET_KEY = "test-jwt-secret-not-for-production-0123456789"
    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL", "sqlite://")
    ARGON2_TIME_COST = 1
    ARGON2_MEMORY_COST = 8192
    USAGE_FLUSH_SECONDS = 0  # tests flush the usage buffer themselves
