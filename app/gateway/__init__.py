"""The LLM gateway: OpenAI-compatible endpoints under /llm/v1 on Latchkey's keys, limits and usage.

A caller sends a Latchkey key as OpenAI SDKs send theirs (`Authorization: Bearer lk_...`) and asks
for `<provider>/<model>` or an alias (providers.py). Each call runs the verification pipeline on
that key (app/services/verifier.py: status, expiry, IP allowlist, the scope `llm:<provider>:<model>`,
its rate limit, quota and budget) with the call's estimated cost, which it admits like any cost,
calls the provider, and settles the difference with the cost of the tokens the provider reports
on the key's budget (proxy.py). Errors are OpenAI-style bodies (`{"error": {...}}`), never a secret.

Like verifications, gateway calls are not under RATE_LIMIT_DEFAULTS: the key's own rate limit,
quota and budget apply (counted by the pipeline), and failed authentications are limited per
address (RATE_LIMIT_AUTH_FAILURES).

Two doors, one gateway: `chat` and `embed` take the `Caller` (from the WSGI environ) and the raw
body, and both the Flask views and the fast path's doors (`DOORS`, app/fast_path.py: Flask's
request machinery skipped) call them, with the same error answers.
"""
import json
import logging
import math
from dataclasses import dataclass

import orjson
from flask import Blueprint, Response, request
from redis.exceptions import RedisError

from app.api.helpers import errors as api_errors  # not app.gateway.errors
from app.api.helpers.auth import credential_from
from app.api.helpers.errors import ApiError, retry_after
from app.api.helpers.ratelimit import limits_itself
from app.api.verify import FailureLimit
from app.extensions import state
from app.fast_path import Door
from app.gateway import providers, proxy
from app.gateway.errors import GatewayError, error_response
from app.models.types import utcnow
from app.services import scopes as scope_rules
from app.services.verifier import Outcome, count, verify

bp = Blueprint("llm", __name__, url_prefix="/llm/v1")
log = logging.getLogger(__name__)
CHARS_PER_TOKEN = 4  # OpenAI's rule of thumb: the estimate of a prompt's tokens before the call

# What a refused key gets: status, OpenAI error type, code.
REFUSALS = {
    Outcome.NOT_FOUND: (401, "invalid_request_error", "invalid_api_key"),
    Outcome.REVOKED: (401, "invalid_request_error", "invalid_api_key"),
    Outcome.SUSPENDED: (401, "invalid_request_error", "invalid_api_key"),
    Outcome.EXPIRED: (401, "invalid_request_error", "invalid_api_key"),
    Outcome.FORBIDDEN: (403, "permission_error", "address_not_allowed"),
    Outcome.INSUFFICIENT_SCOPES: (403, "permission_error", "model_not_allowed"),
    Outcome.RATE_LIMITED: (429, "rate_limit_error", "rate_limit_exceeded"),
    Outcome.QUOTA_EXCEEDED: (429, "insufficient_quota", "insufficient_quota"),
    Outcome.BUDGET_EXCEEDED: (429, "insufficient_quota", "insufficient_quota"),
}


def _answer_error(error: Exception):
    """Every error under /llm/v1 (api_errors.OTHER_FORMATS routes them here), as OpenAI writes them."""
    if isinstance(error, GatewayError):
        return error.response()
    status = getattr(error, "code", None)
    if isinstance(status, int) and 400 <= status < 500:  # werkzeug's (404, 405, 413...)
        methods = getattr(error, "valid_methods", None)
        headers = {"Allow": ", ".join(sorted(methods))} if methods else None
        return error_response(status, {"message": getattr(error, "description", str(error)),
                                       "type": "invalid_request_error", "param": None, "code": None}, headers)
    log.exception("gateway request failed")
    return error_response(500, {"message": "The gateway failed; this was logged.", "type": "server_error",
                                "param": None, "code": None})


def catalog() -> providers.Catalog:
    return state("latchkey_llm_catalog")


# --- the caller ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Caller:
    """Who calls, as the request's headers and address say."""
    authorization: str
    api_key_header: str | None  # X-API-Key
    ip: str

    @classmethod
    def of(cls, environ) -> "Caller":
        """The caller of a WSGI request (its address as ProxyFix, in front of both doors, left it)."""
        return cls(environ.get("HTTP_AUTHORIZATION", ""), environ.get("HTTP_X_API_KEY"),
                   environ.get("REMOTE_ADDR") or "unknown")

    def secret(self) -> str:
        """The API key the caller sent, read as every route reads credentials (credential_from)."""
        try:
            kind, secret = credential_from(self.api_key_header, self.authorization)
        except ApiError:  # a scheme other than Bearer, or no value: no key sent
            kind = secret = None
        if not secret:
            raise GatewayError(401, "Send a Latchkey API key: 'Authorization: Bearer <key>'.",
                               "invalid_request_error", "invalid_api_key")
        if kind != "key":  # a session's JWT, say
            self.refused(Outcome.NOT_FOUND, message="The gateway takes Latchkey API keys only.")
        return secret

    def refused(self, outcome: Outcome, retry_seconds: int | None = None, message: str | None = None):
        status, kind, code = REFUSALS[outcome]
        if status in (401, 403) and outcome is not Outcome.INSUFFICIENT_SCOPES:
            wait = FailureLimit(self.ip).hit()
            if wait is not None:
                raise GatewayError(429, "Too many failed authentications from this address.", "rate_limit_error",
                                   "rate_limit_exceeded", retry_after(wait))
        headers = {"Retry-After": str(retry_seconds)} if retry_seconds else None
        raise GatewayError(status, message or f"The key was refused: {outcome.value}.", kind, code, headers)

    def admit(self, secret: str, model: providers.Model | None, estimate: int):
        """Verify the key `secret` for `model`'s scope (None: no scope) at the cost `estimate`,
        count it under the model, and return (record, when it was admitted)."""
        scopes, model_id = ([model.scope], model.id) if model is not None else ([], "")
        now = utcnow()
        try:
            verdict = verify(secret, scopes, self.ip, estimate, now)
        except RedisError:
            raise GatewayError(503, "Limits cannot be checked now; retry later.", "server_error",
                               "limits_unavailable", {"Retry-After": "5"}) from None
        count(verdict, estimate, now, model_id)
        if verdict.outcome is not Outcome.VALID:
            window = (verdict.rate_limit or {}).get("window") if verdict.outcome is Outcome.RATE_LIMITED else None
            self.refused(verdict.outcome, window)
        return verdict.record, now


# --- the endpoints --------------------------------------------------------------------------------------

def _body(raw: bytes) -> dict:
    try:
        body = orjson.loads(raw or b"null")  # nesting deeper than 1,024 is a ValueError too
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise GatewayError(400, "The body must be a JSON object.", "invalid_request_error")
    return body


def _model(body) -> providers.Model:
    model = catalog().find(body.get("model"))
    if model is None:
        raise GatewayError(404, f"The model {body.get('model')!r} does not exist.", "invalid_request_error",
                           "model_not_found")
    return model


def _whole(body, field, default):
    value = body.get(field)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise GatewayError(400, f"{field} must be a whole number above 0.", "invalid_request_error")
    return value


def prompt_tokens(value) -> int:
    """An estimate of the tokens in a prompt (messages or embedding input): characters / 4."""
    return math.ceil(len(json.dumps(value, ensure_ascii=False)) / CHARS_PER_TOKEN)


def chat(caller: Caller, raw: bytes) -> Response:
    """OpenAI's chat completions, streamed or not, on the provider that serves the model."""
    secret, body = caller.secret(), _body(raw)
    model = _model(body)
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise GatewayError(400, "messages must be a non-empty array.", "invalid_request_error")
    if not isinstance(body.get("stream_options", {}), dict | None):
        raise GatewayError(400, "stream_options must be an object.", "invalid_request_error")
    max_tokens = _whole(body, "max_completion_tokens", _whole(body, "max_tokens", model.max_tokens))
    choices = _whole(body, "n", 1)  # n answers cost n times the output
    estimate_in = prompt_tokens(body["messages"])
    estimate = model.cost(estimate_in, max_tokens * choices)
    record, admitted_at = caller.admit(secret, model, estimate)
    call = proxy.Call(model, record, estimate, admitted_at, estimate_in)
    if body.get("stream") is True:
        return call.stream("chat/completions", body)
    return call.once("chat/completions", body)


def embed(caller: Caller, raw: bytes) -> Response:
    """OpenAI's embeddings on the provider that serves the model."""
    secret, body = caller.secret(), _body(raw)
    model = _model(body)
    if not isinstance(body.get("input"), str | list) or not body["input"]:
        raise GatewayError(400, "input must be a string or a non-empty array.", "invalid_request_error")
    estimate_in = prompt_tokens(body["input"])
    estimate = model.cost(estimate_in, 0)
    record, admitted_at = caller.admit(secret, model, estimate)
    return proxy.Call(model, record, estimate, admitted_at, estimate_in).once("embeddings", body)


@bp.post("/chat/completions")
def chat_completions():
    return chat(Caller.of(request.environ), request.get_data(cache=True))


@bp.post("/embeddings")
def embeddings():
    return embed(Caller.of(request.environ), request.get_data(cache=True))


@bp.get("/models")
def models():
    """The models the calling key may use (its scopes), as OpenAI lists models."""
    caller = Caller.of(request.environ)
    record, _ = caller.admit(caller.secret(), None, 0)  # its rate limit and quota apply, as to every request
    allowed = [model for model in catalog().listed()
               if scope_rules.key_allows(record.scopes, record.owner_is_admin, model.scope)]
    return {"object": "list", "data": [{"id": model.id, "object": "model", "created": 0,
                                        "owned_by": model.provider.name} for model in allowed]}


def _door(answer):
    """The fast path's door (app/fast_path.py) to a POST route: `answer`'s response, or the error's."""
    def door(environ, body: bytes):
        try:
            return answer(Caller.of(environ), body)
        except Exception as error:
            return _answer_error(error)
    return door


DOORS = {f"{bp.url_prefix}/chat/completions": Door(f"{bp.name}.chat_completions", chat_completions, _door(chat)),
         f"{bp.url_prefix}/embeddings": Door(f"{bp.name}.embeddings", embeddings, _door(embed))}


def init_app(app):
    """Load the providers (LLM_PROVIDERS_FILE; a bad file stops the start) and route /llm/v1, whose
    errors, routing ones (404, 405) included, are OpenAI's."""
    app.extensions["latchkey_llm_catalog"] = providers.load(app.config["LLM_PROVIDERS_FILE"])
    app.register_blueprint(bp)
    api_errors.OTHER_FORMATS[f"{bp.url_prefix}/"] = _answer_error
    for view in (chat_completions, embeddings, models):
        limits_itself(app, f"{bp.name}.{view.__name__}")
