"""Flask: `LatchkeyFlask` binds a client to an app, `require_key` protects a view.

    latchkey = LatchkeyFlask(app, Latchkey.from_env())

    @app.post("/chat")
    @require_key("llm:chat", cost=lambda: request.json["max_tokens"])
    def chat():
        return {"key": g.latchkey.key_id}

The key comes from `X-API-Key` or `Authorization: Bearer <key>`; the end client's address from
`request.remote_addr` (put werkzeug's ProxyFix in front when a proxy is). A valid answer is put on
`flask.g.latchkey` (a `Verification`); anything else is answered at once as a JSON:API error
document (responses.py: 401, 403, 429, 503, 500), and the view does not run.
"""
import os
from collections.abc import Callable
from functools import wraps

from flask import Flask, Response, current_app, g, request

from latchkey_client.client import Latchkey
from latchkey_client.responses import Refusal, check, client_address

EXTENSION = "latchkey_client"


def remote_address() -> str | None:
    """The end client's address of the current request, when it is an IP address."""
    return client_address(request.remote_addr)


class LatchkeyFlask:
    """The extension: `LatchkeyFlask(app, client)` or `LatchkeyFlask()` then `init_app(app, client)`.
    Without a client, one is made from the app's LATCHKEY_* settings, then the environment's
    (Latchkey.from_env). `address` returns the end client's address sent to Latchkey (None: none)."""

    def __init__(self, app: Flask | None = None, client: Latchkey | None = None, *,
                 address: Callable[[], str | None] = remote_address):
        self.client = client
        self.address = address
        if app is not None:
            self.init_app(app, client)

    def init_app(self, app: Flask, client: Latchkey | None = None):
        client = client or self.client
        if client is None:
            configured = {name: value for name, value in app.config.items() if name.startswith("LATCHKEY_")}
            client = Latchkey.from_env({**os.environ, **configured})
        app.extensions[EXTENSION] = _Binding(client, self.address)

    @staticmethod
    def require_key(*scopes: str, cost: int | Callable[[], int] | None = None):
        return require_key(*scopes, cost=cost)


class _Binding:
    def __init__(self, client: Latchkey, address: Callable[[], str | None]):
        self.client, self.address = client, address


def client() -> Latchkey:
    """The client bound to the current app."""
    return current_app.extensions[EXTENSION].client


def require_key(*scopes: str, cost: int | Callable[[], int] | None = None):
    """Decorate a view: serve it only to a key Latchkey finds valid for every one of `scopes`, at
    `cost` units of its budget (an int, or a function of the current request returning one; None:
    no cost, so the answer may come from the cache)."""

    def decorator(view):
        @wraps(view)
        def protected(*args, **kwargs):
            binding = current_app.extensions.get(EXTENSION)
            if binding is None:
                raise RuntimeError("require_key needs LatchkeyFlask(app, client) (or init_app) on this app")
            checked = check(binding.client, request.headers.get("X-API-Key"), request.headers.get("Authorization"),
                            scopes, binding.address(), lambda: cost() if callable(cost) else cost)
            if isinstance(checked, Refusal):
                return error_response(checked)
            g.latchkey = checked
            return current_app.ensure_sync(view)(*args, **kwargs)

        return protected

    return decorator


def error_response(refused: Refusal) -> Response:
    return Response(refused.body(), refused.status, headers=refused.header_list())
