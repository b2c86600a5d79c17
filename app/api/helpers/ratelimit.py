"""Who the rate limiter counts: `user:<id>` for a JWT, `key:<id>` for an API key, else the IP.

flask-limiter checks limits in a before_request hook, before any view decorator runs, so the
key function resolves the caller itself (the answer is cached on `g` for the view).
"""
from flask import request

from app.api.helpers.auth import current_actor
from app.api.helpers.errors import ApiError


def client_ip() -> str:
    """Return the client address (the proxy-reported one only through ProxyFix)."""
    return request.remote_addr or "unknown"


def rate_limit_identity() -> str:
    """Return the limiter bucket of the current request."""
    try:
        actor = current_actor()
    except ApiError:  # bad credentials: the request is anonymous, and will get its 401
        actor = None
    return actor.identity if actor is not None else f"ip:{client_ip()}"
