"""The verification fast path: a WSGI door to POST /v1/api-keys/verify that skips Flask's request
machinery (routing, the request context, the hooks) and calls the same pipeline as the Flask view
(verify.answer), with the same error handler.

That is only the same behaviour while none of the app's request hooks has work to do on the
request. Each hook the app runs on this route is listed in HONOURED with the reason the fast path
may skip it, and the requests for which it may not (a query string, an Origin, a body that Flask
must read) are passed on to Flask whole. A hook not in that list (a new `before_request`, an
extension's `after_request`) turns the fast path off for the app, with a warning: every request then
goes through Flask, and tests/test_verify_fast_path.py fails until the hook is listed or handled.
"""
import io
import logging

from app.api import verify
from app.api.helpers.errors import handle_error
from app.api.helpers.requests import MAX_JSON_DEPTH, negotiate

MAX_FAST_BODY = 16 * 1024  # larger bodies are unusual: the Flask view reads them
log = logging.getLogger(__name__)

_QUERY = "requests with a query string go to Flask"
HONOURED = {
    "app.api.helpers.auth.refuse_query_credentials": _QUERY,
    "app.api.helpers.requests.check_media_types": "the fast path negotiates as it does (requests.negotiate)",
    "app.api.helpers.requests.check_query": _QUERY,
    "app.api.helpers.requests.undasherize_query": _QUERY,
    "app.api.helpers.requests.check_path_ids": "the route has no ids",
    "app.api.helpers.requests.check_json_body": "bodies with more brackets than MAX_JSON_DEPTH go to Flask",
    "app.api.helpers.ratelimit._Limiter._check_request_limit": "skips the endpoint (ratelimit.limits_itself)",
    "app.api.helpers.ratelimit.enforce_quota": "skips the endpoint: the pipeline charges the caller's quota",
    "app.api.helpers.ratelimit.finish_key_request": "skips the endpoint: the pipeline counts usage",
    "app.api.helpers.ratelimit._Limiter.add_headers": "no flask-limiter limit applies (limits_itself): no headers",
    "flask_limiter._extension.Limiter.__inject_headers": "no flask-limiter limit applies: no headers",
    "flask_limiter._extension.Limiter.__release_context": "nothing to release: flask-limiter did not run",
    "flask_cors.extension.make_after_request_function.<locals>.cors_after_request":
        "requests with an Origin header go to Flask",
    "app.api.helpers.cors.narrow_allowed_methods": "requests with an Origin header go to Flask",
}
HOOKS = ("before_request_funcs", "after_request_funcs", "teardown_request_funcs", "url_value_preprocessors")


class VerifyFastPath:
    """WSGI middleware: answers POST /v1/api-keys/verify itself when it `takes` the request, else
    passes it on to Flask (inside BodyLimit and ProxyFix, which wrap both doors)."""

    def __init__(self, app, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app
        self._open = None  # decided at the first request, once every hook is registered

    def __call__(self, environ, start_response):
        if not self.takes(environ):
            return self.wsgi_app(environ, start_response)
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        if body.count(b"{") + body.count(b"[") > MAX_JSON_DEPTH:  # check_json_body's to judge
            environ["wsgi.input"] = io.BytesIO(body)
            return self.wsgi_app(environ, start_response)
        with self.app.app_context():
            try:
                negotiate(environ.get("CONTENT_TYPE", ""), environ.get("HTTP_ACCEPT", ""), bool(body))
                document, headers = verify.answer(
                    environ.get("HTTP_X_API_KEY"), environ.get("HTTP_AUTHORIZATION", ""),
                    environ.get("REMOTE_ADDR") or "unknown", body)
            except Exception as exc:  # answered as the Flask view's error handler answers it
                return handle_error(exc)(environ, start_response)
        start_response("200 OK", [*headers.items(), ("Content-Length", str(len(document)))])
        return [document]

    def takes(self, environ) -> bool:
        """Whether this request is the fast path's to answer (see the module's docstring)."""
        return (environ.get("PATH_INFO") == verify.PATH and environ.get("REQUEST_METHOD") == "POST"
                and not environ.get("QUERY_STRING") and "HTTP_ORIGIN" not in environ
                and environ.get("CONTENT_LENGTH", "").isdigit() and int(environ["CONTENT_LENGTH"]) <= MAX_FAST_BODY
                and "HTTP_TRANSFER_ENCODING" not in environ and self.is_open())

    def is_open(self) -> bool:
        if self._open is None:
            unknown = unhonoured_hooks(self.app)
            if unknown:
                log.warning("verification fast path off: request hooks it does not honour: %s", ", ".join(unknown))
            self._open = not unknown
        return self._open


def unhonoured_hooks(app) -> list:
    """Return the names of the request hooks the app runs on the verification route that are not in
    HONOURED (the app-wide ones and the `v1` blueprint's)."""
    names = []
    for attribute in HOOKS:
        for scope in (None, verify.bp.name):
            names += [_name(hook) for hook in getattr(app, attribute).get(scope, ())]
    if app.view_functions.get(verify.ENDPOINT) is not verify.verify_key:
        names.append(f"view {verify.ENDPOINT}")
    return sorted(name for name in set(names) if name not in HONOURED)


def _name(hook) -> str:
    function = getattr(hook, "func", hook)  # functools.partial
    function = getattr(function, "__func__", function)  # bound methods
    return f"{function.__module__}.{function.__qualname__}"
