"""The fast path: WSGI doors to the hot routes that skip Flask's request machinery (routing, the
request context, the hooks) and call the same function as the Flask view, with the same error
handler: POST /v1/api-keys/verify (app/api/verify.py) and the gateway's POST /llm/v1/chat/completions
and /llm/v1/embeddings (app/gateway). Each door is a `Door`: the Flask endpoint it stands in front
of, that endpoint's view, and its `answer(environ, body)`, which returns a WSGI application that
answers the request, or None to hand the request to Flask.

That is only the same behaviour while none of the app's request hooks has work to do on those
routes. Each hook the app runs on them is listed in HONOURED with the reason the fast path may skip
it, and the requests for which it may not (a query string, an Origin) are passed on to Flask whole.
A hook not in that list (a new `before_request`, an extension's `after_request`), or a door's
endpoint served by another view, turns the fast path off for the app, with a warning: every request
then goes through Flask, and tests/test_verify_fast_path.py fails until the hook is listed or handled.
"""
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

_QUERY = "requests with a query string go to Flask"
HONOURED = {
    "app.api.helpers.auth.refuse_query_credentials": _QUERY,
    "app.api.helpers.requests.check_media_types": "the verify door negotiates as it does (requests.negotiate)",
    "app.api.helpers.requests.check_query": _QUERY,
    "app.api.helpers.requests.undasherize_query": _QUERY,
    "app.api.helpers.requests.check_path_ids": "the routes have no ids",
    "app.api.helpers.requests.check_json_body": "the verify door hands bodies with more brackets than "
                                                 "MAX_JSON_DEPTH to Flask",
    "app.api.helpers.ratelimit._Limiter._check_request_limit": "skips the endpoints (ratelimit.limits_itself)",
    "app.api.helpers.ratelimit.enforce_quota": "skips the endpoints: the pipeline charges the caller's quota",
    "app.api.helpers.ratelimit.finish_key_request": "skips the endpoints: the pipeline counts usage",
    "app.api.helpers.ratelimit._Limiter.add_headers": "no flask-limiter limit applies (limits_itself): no headers",
    "flask_limiter._extension.Limiter.__inject_headers": "no flask-limiter limit applies: no headers",
    "flask_limiter._extension.Limiter.__release_context": "nothing to release: flask-limiter did not run",
    "flask_cors.extension.make_after_request_function.<locals>.cors_after_request":
        "requests with an Origin header go to Flask",
    "app.api.helpers.cors.narrow_allowed_methods": "requests with an Origin header go to Flask",
}
HOOKS = ("before_request_funcs", "after_request_funcs", "teardown_request_funcs", "url_value_preprocessors")


@dataclass(frozen=True)
class Door:
    endpoint: str  # the Flask endpoint this door stands in front of ("v1.verify_key")
    view: Callable  # that endpoint's view: if the app routes it to another, the fast path is off
    answer: Callable  # (environ, body bytes) -> a WSGI application answering the request, or None: Flask's
    max_body: int | None = None  # larger bodies go to Flask (None: up to MAX_CONTENT_LENGTH, BodyLimit's)


class FastPath:
    """WSGI middleware: a POST to a door's path is answered by the door when the fast path `takes`
    it, else passed on to Flask (inside BodyLimit and ProxyFix, which wrap both)."""

    def __init__(self, app, wsgi_app, doors: dict):
        self.app = app
        self.wsgi_app = wsgi_app
        self.doors = doors  # path -> Door
        self._open = None  # decided at the first request, once every hook is registered

    def __call__(self, environ, start_response):
        door = self.takes(environ)
        if door is None:
            return self.wsgi_app(environ, start_response)
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        with self.app.app_context():
            answer = door.answer(environ, body)
        if answer is None:
            environ["wsgi.input"] = io.BytesIO(body)
            return self.wsgi_app(environ, start_response)
        return answer(environ, start_response)

    def takes(self, environ) -> Door | None:
        """The door that answers this request, if it is the fast path's (see the module's docstring)."""
        door = self.doors.get(environ.get("PATH_INFO"))
        if (door is None or environ.get("REQUEST_METHOD") != "POST" or environ.get("QUERY_STRING")
                or "HTTP_ORIGIN" in environ or "HTTP_TRANSFER_ENCODING" in environ
                or not environ.get("CONTENT_LENGTH", "").isdigit()
                or (door.max_body is not None and int(environ["CONTENT_LENGTH"]) > door.max_body)
                or not self.is_open()):
            return None
        return door

    def is_open(self) -> bool:
        if self._open is None:
            unknown = unhonoured_hooks(self.app, self.doors.values())
            if unknown:
                log.warning("fast path off: request hooks it does not honour: %s", ", ".join(unknown))
            self._open = not unknown
        return self._open


def unhonoured_hooks(app, doors) -> list:
    """Return the names of the request hooks the app runs on the doors' routes that are not in
    HONOURED (the app-wide ones and each door's blueprint's), and of the doors whose endpoint the
    app routes to another view."""
    names = []
    for door in doors:
        blueprint = door.endpoint.rpartition(".")[0]
        for attribute in HOOKS:
            for scope in (None, blueprint):
                names += [_name(hook) for hook in getattr(app, attribute).get(scope, ())]
        if app.view_functions.get(door.endpoint) is not door.view:
            names.append(f"view {door.endpoint}")
    return sorted(name for name in set(names) if name not in HONOURED)


def _name(hook) -> str:
    function = getattr(hook, "func", hook)  # functools.partial
    function = getattr(function, "__func__", function)  # bound methods
    return f"{function.__module__}.{function.__qualname__}"
