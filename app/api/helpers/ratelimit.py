"""Rate limits and quotas on the request path.

Who is counted: `user:<id>` for a JWT, `key:<id>` for an API key, else `ip:<address>`.
flask-limiter checks limits in a before_request hook, before any view decorator runs, so the key
function resolves the caller itself (the answer is cached on `g` for the view). A request with a
bad credential is anonymous and counted by IP; an authenticated one never is.

Limits that apply:
- RATE_LIMIT_DEFAULTS, per endpoint and per caller (flask-limiter's default limits);
- a key's own `rate-limit`, across all endpoints, on top of the defaults (an application limit
  keyed like the verification endpoint's, so both count against the same window);
- a key's `quota`, checked after the rate limits: an exhausted quota is a 429 QUOTA_EXCEEDED.
Every request made with a key is counted in its usage, by outcome.
"""

import logging
import time

from flask import current_app, g, request
from flask_limiter import ApplicationLimit, HeaderNames, Limiter
from redis.exceptions import RedisError

from app.api.helpers.auth import current_actor
from app.api.helpers.cors import is_preflight
from app.api.helpers.errors import ApiError, retry_after
from app.models.types import utcnow
from app.services import allowances, breaker, usage
from app.services.admission import KEY_RATE_SCOPE, STRATEGY, Allowance, period_window

log = logging.getLogger(__name__)


def client_ip() -> str:
    """Return the client address (the proxy-reported one only through ProxyFix)."""
    return request.remote_addr or "unknown"


def _actor_or_none():
    try:
        return current_actor()
    except ApiError:  # bad credentials: the request is anonymous, and will get its 401
        return None


def rate_limit_identity() -> str:
    """Return the limiter bucket of the current request."""
    actor = _actor_or_none()
    return actor.identity if actor is not None else f"ip:{client_ip()}"


def key_rate_limit() -> str:
    """Return the calling key's own limit string ('' when none: flask-limiter then skips it)."""
    actor = _actor_or_none()
    return actor.key.rate_limit or "" if actor is not None and actor.key is not None else ""


def charge_quota(record) -> dict:
    """Count one request against a key's quota; return its X-Quota-* headers, or raise 429
    QUOTA_EXCEEDED (with those headers and Retry-After) when it is spent."""
    quota, now = Allowance("quota", record.id, record.quota_limit, record.quota_period), utcnow()
    try:
        admission = allowances.admit([], [(quota, 1)], now)
    except RedisError:
        allowances.tolerate_storage_error("quota")
        return {}
    [(_, used)] = admission.used  # the quota, the one limit charged
    state = quota.state(used, now)
    headers = {"X-Quota-Limit": str(quota.limit), "X-Quota-Remaining": str(state["remaining"])}
    reset_at = period_window(quota.period, now)[1]
    if reset_at is not None:
        headers["X-Quota-Reset"] = str(int(reset_at.timestamp()))
    if not admission.admitted:
        if reset_at is not None:
            headers.update(retry_after((reset_at - now).total_seconds()))
        raise ApiError(429, "Quota exceeded", f"The key's {quota.period} quota of {quota.limit} requests is spent.",
                       code="QUOTA_EXCEEDED", headers=headers)
    return headers


def enforce_quota():
    """Count a key-authenticated request against the key's quota; 429 QUOTA_EXCEEDED when spent."""
    if _limits_itself() or is_preflight():
        return
    actor = _actor_or_none()
    if actor is None or actor.key is None or actor.key.quota_limit is None:
        return
    try:
        g.quota_headers = charge_quota(actor.key)
    except ApiError:
        g.key_outcome = (actor.key_id, "QUOTA_EXCEEDED")
        raise


def finish_key_request(response):
    """Add quota headers, and count the request in the key's usage by outcome."""
    if _limits_itself():
        return response
    response.headers.extend(g.get("quota_headers", {}))
    actor = g.get("actor")
    key_id, outcome = g.get("key_outcome", (actor.key_id if actor is not None else None, "VALID"))
    if key_id is not None:
        if response.status_code == 429 and outcome == "VALID":
            outcome = "RATE_LIMITED"
        usage.buffer().count(key_id, outcome)
    return response


def limits_itself(app, endpoint: str):
    """Leave `endpoint`'s limits, quota and usage counting to its own view: the limiter, the quota
    hook and the usage counting here skip it (the verification pipeline does all three)."""
    app.extensions["latchkey_limits_itself"].add(endpoint)


def _limits_itself() -> bool:
    return request.endpoint in current_app.extensions["latchkey_limits_itself"]


class _Limiter(Limiter):
    """flask-limiter with the storage error policy applied to storage errors only.

    flask-limiter's `swallow_errors` would swallow *every* exception raised while checking limits (a
    bug in a key function too) and serve the request without limits. Here nothing is swallowed but
    Redis errors (BreakerOpen included), and those by RATELIMIT_ON_STORAGE_ERROR, as everywhere
    else: `open` serves the request (with a warning), `closed` answers 503 LIMITS_UNAVAILABLE.
    """

    def _check_request_limit(self, callable_name=None, in_middleware=True):
        # Called by the before_request hook and by `with limiter.limit(...)` blocks alike.
        try:
            super()._check_request_limit(callable_name=callable_name, in_middleware=in_middleware)
        except RedisError:
            allowances.tolerate_storage_error("rate limits")

    @property
    def current_limit(self):
        """The limit shown in the X-RateLimit-* headers, its window read now; None (no headers) when
        the storage fails meanwhile: the request was admitted and has been served, so its answer
        stands whatever the policy (a retried POST would do its work twice)."""
        limit = super().current_limit
        if limit is None:
            return None
        try:
            _ = limit.window  # read once, kept on the RequestLimit for the header values
        except RedisError:
            log.warning("rate limit headers left out: rate limit storage unreachable")
            return None
        return limit

    def add_headers(self, response):
        """Add the X-RateLimit-* headers of the limit that decided the request, and to flask-limiter's
        429 its Retry-After, rounded up. (flask-limiter's own headers are off: it put a Retry-After on
        every response, truncated, and over a 429's or 503's own.)"""
        limit = self.current_limit
        if limit is None:
            return response
        response.headers[HeaderNames.LIMIT.value] = str(limit.limit.amount)
        response.headers[HeaderNames.REMAINING.value] = str(limit.remaining)
        response.headers[HeaderNames.RESET.value] = str(limit.reset_at)
        if response.status_code == 429 and HeaderNames.RETRY_AFTER.value not in response.headers:
            response.headers.update(retry_after(limit.window[0] - time.time()))
        return response


def _storage_options(config) -> dict:
    """Timeouts of the Redis clients: a hung Redis costs at most these per call (then the breaker)."""
    if not config["RATELIMIT_STORAGE_URI"].startswith(("redis", "valkey")):
        return {}
    return {"socket_timeout": config["REDIS_SOCKET_TIMEOUT"], "socket_connect_timeout": config["REDIS_CONNECT_TIMEOUT"]}


def init_app(app, exempt_blueprints=()):
    """Bind a Limiter configured from this app's config, then the quota check after it."""
    config = app.config
    limiter = _Limiter(
        rate_limit_identity,
        default_limits=[config["RATE_LIMIT_DEFAULTS"]],
        application_limits=[ApplicationLimit(key_rate_limit, scope=KEY_RATE_SCOPE)],
        headers_enabled=False,  # _Limiter.add_headers writes them
        storage_uri=config["RATELIMIT_STORAGE_URI"],
        storage_options=_storage_options(config),
        swallow_errors=False,  # storage errors only: see _Limiter
        key_prefix=config.get("RATELIMIT_KEY_PREFIX", ""),
        strategy=STRATEGY,  # the verifier counts a key's own limit in these buckets too
    )
    limiter.init_app(app)
    # Every Redis call made with this storage (flask-limiter's, our counters', the readiness ping)
    # fails at once for REDIS_RETRY_SECONDS after one spent a timeout failing to reach Redis.
    breaker.protect(limiter.storage, config["REDIS_RETRY_SECONDS"])
    allowances.init_app(app, limiter.storage)
    for blueprint in exempt_blueprints:
        limiter.exempt(blueprint)
    app.extensions["latchkey_limits_itself"] = set()
    limiter.request_filter(_limits_itself)  # skips flask-limiter's whole check
    limiter.request_filter(is_preflight)  # the browser asking (helpers/cors.py), not the caller acting
    app.extensions["latchkey_limiter"] = limiter
    app.before_request(enforce_quota)  # registered after the limiter's hook: runs after it
    app.after_request(finish_key_request)
    app.after_request(limiter.add_headers)
