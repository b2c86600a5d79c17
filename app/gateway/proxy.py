"""Calling a provider for the gateway, and settling what the call cost.

- One urllib3 connection pool per provider and process, with the provider's timeout (connect and
  read; a socket's timeout bounds its writes too), no retries, no redirects, no cookies (a cookie
  jar would hand one caller's upstream cookies to the next). urllib3 rather than httpx: a call
  through httpx's transport cost 0.28 ms more CPU than through http.client, most of it in h11's
  state machine, against 0.14 ms for urllib3 (which is http.client with a pool), and the gateway
  has 1 ms to spend in all (README, "The LLM gateway"). Nor does it ask for a compressed answer: a
  stream is relayed byte for byte.
- The upstream credential comes from the provider's environment variable, in the Authorization
  header of the upstream request only: never logged, never in an answer.
- A call is admitted at an estimate; afterwards the difference with the cost of the tokens the
  provider reports (`usage`; a stream asks for it with `stream_options.include_usage`) goes to the
  key's budget (allowances.settle_budget: on this worker's lease when it holds one, without a round
  trip). When a provider reports none, the cost is approximated (the prompt's estimate, and one
  token per streamed content chunk, which is what OpenAI-compatible servers send) and the log says
  so: no tokenizer is bundled.
- A provider's error (4xx, 5xx) is passed on with its status as an OpenAI error body, and the
  estimate given back: nothing was produced. A provider that cannot be reached is a 502, given
  back too. One that timed out while answering is a 504, charged its estimate: it may have done
  (and billed) the work.
- Streams are passed on chunk by chunk as they arrive. When the client goes away, the WSGI server
  closes the response: the upstream request is closed with it (the provider stops generating), and
  what was streamed so far is settled.
"""
import json
import logging
import os
import threading

import orjson
import urllib3
from flask import Response, current_app
from redis.exceptions import RedisError
from urllib3.exceptions import HTTPError
from urllib3.exceptions import TimeoutError as UpstreamTimeout

from app.gateway.errors import GatewayError, error_response
from app.services import allowances, usage

log = logging.getLogger(__name__)
CHUNK = 64 * 1024
POOL_SIZE = 64  # connections kept per provider and process: more than a worker's threads
ERRORS = (HTTPError, OSError)  # what calling a provider may raise (urllib3 wraps most socket errors)
TIMEOUTS = (UpstreamTimeout, TimeoutError)
_pools: dict = {}
_lock = threading.Lock()


def pool_for(provider) -> urllib3.connectionpool.HTTPConnectionPool:
    """This process's connection pool to `provider` (a forked worker makes its own). urllib3 sets
    TCP_NODELAY on its connections: a request goes out as two writes (headers, body), which Nagle's
    algorithm would hold apart until the headers are acknowledged."""
    key = (os.getpid(), provider)  # frozen: its settings are part of the key
    with _lock:
        pool = _pools.get(key)
        if pool is None:
            timeout = urllib3.Timeout(connect=provider.timeout, read=provider.timeout)
            pool = _pools[key] = urllib3.connection_from_url(provider.base_url, maxsize=POOL_SIZE, timeout=timeout,
                                                             retries=False)
        return pool


def send(provider, method: str, path: str, payload: dict | None = None, accept: str = "application/json",
         stream: bool = False) -> urllib3.BaseHTTPResponse:
    """Send `payload` (JSON) to `provider`'s `path` with its credential and timeouts; return the
    response, read whole (its connection back in the pool), or with `stream` unread: read it, then
    `finish` it. Raises one of ERRORS."""
    headers = {"Accept": accept}
    content = None
    if payload is not None:
        headers["Content-Type"] = "application/json"
        content = orjson.dumps(payload)
    api_key = provider.api_key()
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return pool_for(provider).urlopen(method, f"{provider.path}/{path}", body=content, headers=headers,
                                      redirect=False, preload_content=not stream, decode_content=False)


def finish(response: urllib3.BaseHTTPResponse, whole: bool):
    """Give a streamed response's connection back to its pool: as it is when it was read `whole`,
    else closed first (the provider stops sending on a closed connection)."""
    if not whole:
        response.close()
    response.release_conn()


def settle(record, model_id: str, estimate: int, admitted_at, cost: int, tokens=(0, 0)):
    """A call admitted at `estimate` cost `cost`: the difference goes to the key's budget (given
    back, or added past the limit: it was spent) and to usage, with the (input, output) `tokens`,
    under `model_id`. When the budget cannot be reached it stays charged at the estimate (logged)."""
    difference = cost - estimate
    try:
        allowances.settle_budget(record, difference, admitted_at)
    except RedisError:
        log.warning("gateway: a %s call of key %d cost %d against an estimate of %d; the budget, unreachable, stays "
                    "charged at the estimate", model_id, record.id, cost, estimate)
    if difference or any(tokens):
        usage.buffer().add_cost(record.id, "VALID", difference, admitted_at.replace(minute=0, second=0, microsecond=0),
                                model_id, tokens)


class Call:
    """One gateway call of `model` for the key `record`, admitted at `estimate` at `admitted_at`."""

    def __init__(self, model, record, estimate: int, admitted_at, estimate_in: int):
        self.model, self.record, self.estimate, self.admitted_at = model, record, estimate, admitted_at
        self.estimate_in = estimate_in  # the prompt's estimated tokens

    def _send(self, path: str, body: dict, stream: bool) -> urllib3.BaseHTTPResponse:
        payload = {**body, "model": self.model.upstream}
        if stream:
            payload["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        try:
            accept = "text/event-stream" if stream else "application/json"
            return send(self.model.provider, "POST", path, payload, accept, stream)
        except TIMEOUTS:
            self._settle(self.estimate, "timed out")
            raise GatewayError(504, f"The provider {self.model.provider.name} did not answer in time.", "timeout",
                               "upstream_timeout") from None
        except ERRORS as error:
            self._settle(0, "unreachable")
            raise GatewayError(502, f"The provider {self.model.provider.name} cannot be reached "
                               f"({type(error).__name__}).", "server_error", "upstream_unreachable") from None

    def _settle(self, cost: int, why: str | None = None, tokens=(0, 0), reported: bool = True):
        """Settle at `cost`, logging `why` when the call did not simply end (a warning when the
        provider reported no usage: the cost is then an approximation)."""
        if why:
            log.log(logging.INFO if reported else logging.WARNING, "gateway: %s call of key %d %s", self.model.id,
                    self.record.id, why)
        settle(self.record, self.model.id, self.estimate, self.admitted_at, cost, tokens)

    def _refused_upstream(self, response: urllib3.BaseHTTPResponse, content: bytes) -> Response:
        """The provider's error, passed on (an OpenAI error body), the estimate given back. A
        provider that refuses the gateway's own credential (401, 403) is the operator's problem, not
        the caller's: a 502, and nothing of its message (which may quote the credential)."""
        self._settle(0)
        provider = self.model.provider
        if response.status in (401, 403):
            log.error("gateway: provider %s refused the credential in $%s (%d)", provider.name,
                      provider.api_key_env, response.status)
            raise GatewayError(502, f"The provider {provider.name} refused the gateway's credential.", "server_error",
                               "upstream_credential_refused")
        generic = {"message": f"The provider answered {response.status}.", "type": "server_error",
                   "param": None, "code": None}
        try:
            error = json.loads(content)["error"]
            if not isinstance(error, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            error = generic
        api_key = provider.api_key()
        if api_key and api_key in json.dumps(error, ensure_ascii=False):  # never hand the upstream credential on
            error = generic
        headers = {"Retry-After": response.headers["Retry-After"]} if "Retry-After" in response.headers else None
        return error_response(response.status, error, headers)

    def _tokens(self, reported_usage, streamed: int = 0) -> tuple[tuple[int, int], bool]:
        """((input, output) tokens, reported) of a provider's `usage`; without one, the prompt's
        estimate and one token per `streamed` content chunk."""
        if isinstance(reported_usage, dict) and isinstance(reported_usage.get("prompt_tokens"), int):
            output = reported_usage.get("completion_tokens")
            return (reported_usage["prompt_tokens"], output if isinstance(output, int) else 0), True
        return (self.estimate_in, streamed), False

    def once(self, path: str, body: dict) -> Response:
        """A call answered in one piece (chat without `stream`, embeddings)."""
        response = self._send(path, body, stream=False)
        if response.status != 200:
            return self._refused_upstream(response, response.data)
        try:
            answer = orjson.loads(response.data)
        except ValueError:
            self._settle(self.estimate, "answered no JSON")
            raise GatewayError(502, "The provider's answer was not JSON.", "server_error", "upstream_invalid") from None
        tokens, reported = self._tokens(answer.get("usage") if isinstance(answer, dict) else None)
        self._settle(self.model.cost(*tokens), None if reported else "reported no usage: settled at the prompt's "
                     "estimate", tokens, reported)
        if isinstance(answer, dict) and "model" in answer:
            answer["model"] = self.model.id
        return Response(orjson.dumps(answer), 200, mimetype="application/json")

    def stream(self, path: str, body: dict) -> Response:
        """A streamed chat completion, passed on as it arrives."""
        response = self._send(path, body, stream=True)
        if response.status != 200:
            try:
                content = response.read()
            except ERRORS:
                content = b""
            finish(response, whole=False)
            return self._refused_upstream(response, content)
        return Response(self._relay(response, current_app._get_current_object()), 200,
                        mimetype="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def _relay(self, response: urllib3.BaseHTTPResponse, app):
        """The stream's events as they arrive, then its settlement, in an app context of its own:
        the stream is read after the view (or the fast path's door) has returned."""
        events = _Events(self.model.id)
        ended = "ended"
        try:
            for chunk in iter(lambda: response.read1(CHUNK), b""):  # what has arrived, at once
                relayed = events.feed(chunk)
                if relayed:
                    yield relayed
            if events.rest():
                yield events.rest()
        except ERRORS as error:  # the provider went away mid-stream: say so in the stream
            ended = f"broke off ({type(error).__name__})"
            message = json.dumps({"error": {"message": "The provider broke off the stream.", "type": "server_error",
                                            "param": None, "code": "upstream_broke_off"}})
            yield f"data: {message}\n\n".encode()
        except GeneratorExit:  # the client went away: the upstream request is closed below
            ended = "was left by the client"
            raise
        finally:
            finish(response, whole=ended == "ended")
            tokens, reported = self._tokens(events.usage, events.content_chunks)
            why = None if ended == "ended" else ended
            if not reported:
                why = f"{ended}; no usage reported: settled at the prompt's estimate and {tokens[1]} streamed chunks"
            with app.app_context():
                self._settle(self.model.cost(*tokens), why, tokens, reported)


class _Events:
    """A relayed stream, event by event: each complete event is passed on as it arrives, with the
    model named as the caller named it (`provider/model`, as in plain answers); what it told is kept:
    the usage chunk, and how many chunks carried content."""

    def __init__(self, model_id: str):
        self._model_id = model_id
        self._buffer = b""
        self.usage = None
        self.content_chunks = 0

    def feed(self, chunk: bytes) -> bytes:
        """The events `chunk` completes, to pass on (b"" while an event is still incomplete)."""
        self._buffer += chunk
        *events, self._buffer = self._buffer.replace(b"\r\n", b"\n").split(b"\n\n")
        return b"".join(b"\n".join(self._line(line) for line in event.split(b"\n")) + b"\n\n" for event in events)

    def rest(self) -> bytes:
        """What followed the last complete event (nothing, from a well-behaved provider)."""
        return self._buffer

    def _line(self, line: bytes) -> bytes:
        if not line.startswith(b"data:") or line[5:].strip() == b"[DONE]":
            return line
        try:
            event = orjson.loads(line[5:])
        except ValueError:
            return line
        if not isinstance(event, dict):
            return line
        if isinstance(event.get("usage"), dict):
            self.usage = event["usage"]
        for choice in event.get("choices") or ():
            if isinstance(choice, dict) and (choice.get("delta") or {}).get("content"):
                self.content_chunks += 1
        if "model" not in event:
            return line
        event["model"] = self._model_id
        return b"data: " + orjson.dumps(event)
