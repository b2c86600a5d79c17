"""Cross-origin access for browser pages served from CORS_ORIGINS (flask-cors, on /v1 only).

A page's script reads only the response headers it is allowed to: Location (a created resource),
and the rate limit and quota headers a well-behaved client slows down by. A browser caches a
preflight's answer for CORS_MAX_AGE seconds, and is told the methods of the requested path only,
as a 405 there names them (so a new route needs no CORS setting). Preflights are the browser asking,
not the caller acting: the rate limits and quotas skip them (helpers/ratelimit.py).
"""
from flask import request
from flask_limiter import HeaderNames

from app.api.helpers.errors import served_methods
from app.extensions import cors

EXPOSED_HEADERS = ["Location", *(name.value for name in HeaderNames),  # X-RateLimit-*, Retry-After
                   "X-Quota-Limit", "X-Quota-Remaining", "X-Quota-Reset"]  # helpers/ratelimit.charge_quota
ALLOW_METHODS = "Access-Control-Allow-Methods"


def is_preflight() -> bool:
    """Whether the current request is a CORS preflight (what a browser sends before a request
    that is not "simple": an OPTIONS with Origin and Access-Control-Request-Method)."""
    return (request.method == "OPTIONS" and "Origin" in request.headers
            and "Access-Control-Request-Method" in request.headers)


def narrow_allowed_methods(response):
    """Answer a preflight with the methods the requested path is served with (those a 405's Allow
    names: errors.served_methods), not every method the API has (flask-cors's list)."""
    if ALLOW_METHODS in response.headers:
        methods = served_methods() - {"HEAD", "OPTIONS"}
        response.headers[ALLOW_METHODS] = ", ".join(sorted(methods))
    return response


def init_app(app):
    """Answer cross-origin requests from CORS_ORIGINS, if any (no cookies: credentials are headers)."""
    if not app.config["CORS_ORIGINS"]:
        return
    app.after_request(narrow_allowed_methods)  # registered first: Flask runs it after flask-cors's
    cors.init_app(app, resources={r"/v1/*": {"origins": app.config["CORS_ORIGINS"]}},
                  methods=["GET", "POST", "PATCH", "DELETE"], expose_headers=EXPOSED_HEADERS,
                  max_age=app.config["CORS_MAX_AGE"], supports_credentials=False)
