"""A small service protected by Latchkey through the SDK's Flask decorator.

    LATCHKEY_URL=http://127.0.0.1:8000 LATCHKEY_SERVICE_KEY=lk_... \\
        .venv/bin/flask --app 'examples.protected_service:create_app()' run --port 8001
    curl -s localhost:8001/v1/hello -H "Authorization: Bearer $APP"
    curl -s localhost:8001/v1/chat -H "X-API-Key: $APP" -H 'Content-Type: application/json' -d '{"max-tokens": 4}'

Configured from the environment (Latchkey.from_env): LATCHKEY_URL and LATCHKEY_SERVICE_KEY (a key
with keys:verify), and optionally LATCHKEY_FAIL (closed, open, cached), LATCHKEY_CACHE_TTL,
LATCHKEY_NEGATIVE_TTL, LATCHKEY_TIMEOUT, LATCHKEY_RETRIES. tests/test_sdk.py runs it against a real
Latchkey; bench/sdk.py measures /v1/hello against its unprotected twin /v1/hello-public.
"""
from flask import Flask, g, request
from latchkey_client import Latchkey
from latchkey_client.flask import LatchkeyFlask, require_key


def chat_cost() -> int:
    """What a chat request costs: its `max-tokens` (a whole number), else 1."""
    body = request.get_json(silent=True)
    tokens = body.get("max-tokens") if isinstance(body, dict) else None
    return tokens if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0 else 1


def principal() -> dict:
    """The verified key as this service answers it."""
    answer = g.latchkey
    return {"key-id": answer.key_id, "owner-id": answer.owner_id, "scopes": list(answer.scopes),
            "source": answer.source, "unverified": answer.unverified, "budget-remaining": answer.budget_remaining}


def create_app(client: Latchkey | None = None) -> Flask:
    """Return the service, verifying keys with `client` (default: configured from the environment)."""
    app = Flask(__name__)
    LatchkeyFlask(app, client or Latchkey.from_env())

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/v1/hello")
    @require_key("llm:chat")
    def hello():
        """Any key with llm:chat (or llm:*); the answer may come from the SDK's cache."""
        return {"data": principal()}

    @app.get("/v1/hello-public")
    def hello_public():
        """The same work as /v1/hello without the decorator: the benchmark's yardstick."""
        return {"data": {"key-id": None, "owner-id": None, "scopes": [], "source": None, "unverified": False,
                         "budget-remaining": None}}

    @app.post("/v1/chat")
    @require_key("llm:chat", cost=chat_cost)
    def chat():
        """A request that costs its `max-tokens` units of the key's budget: asked of Latchkey every time."""
        return {"data": principal(), "meta": {"cost": chat_cost()}}

    return app
