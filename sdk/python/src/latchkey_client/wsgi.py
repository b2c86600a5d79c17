"""Plain WSGI: `LatchkeyMiddleware` protects a whole application, or the paths under `prefixes`.

    app.wsgi_app = LatchkeyMiddleware(app.wsgi_app, Latchkey.from_env(), scopes=["rag:search"])

A valid answer is put in the environ under `latchkey.verification`; anything else is answered by
the middleware itself (responses.py), and the application is not called.
"""
from collections.abc import Callable, Iterable
from http import HTTPStatus

from latchkey_client.client import Latchkey
from latchkey_client.responses import Refusal, check, client_address

ENVIRON_KEY = "latchkey.verification"


def remote_address(environ: dict) -> str | None:
    return client_address(environ.get("REMOTE_ADDR"))


class LatchkeyMiddleware:
    """Verify the key of every request whose path starts with one of `prefixes` and is not in
    `exempt`, for `scopes`, at `cost` (an int, a function of the environ, or None)."""

    def __init__(self, app, client: Latchkey, *, scopes: Iterable[str] = (),
                 cost: int | Callable[[dict], int] | None = None, prefixes: Iterable[str] = ("/",),
                 exempt: Iterable[str] = (), address: Callable[[dict], str | None] = remote_address):
        self.app = app
        self.client = client
        self.scopes = tuple(scopes)
        self.cost = cost
        self.prefixes = tuple(prefixes)
        self.exempt = frozenset(exempt)
        self.address = address

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO") or "/"
        if path in self.exempt or not path.startswith(self.prefixes):
            return self.app(environ, start_response)
        checked = check(self.client, environ.get("HTTP_X_API_KEY"), environ.get("HTTP_AUTHORIZATION"), self.scopes,
                        self.address(environ), lambda: self.cost(environ) if callable(self.cost) else self.cost)
        if isinstance(checked, Refusal):
            return _answer(checked, start_response)
        environ[ENVIRON_KEY] = checked
        return self.app(environ, start_response)


def _answer(refused: Refusal, start_response):
    body = refused.body()
    start_response(f"{refused.status} {HTTPStatus(refused.status).phrase}",
                   [*refused.header_list(), ("Content-Length", str(len(body)))])
    return [body]
