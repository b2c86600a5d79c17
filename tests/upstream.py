"""A local OpenAI-compatible upstream for the gateway tests: `Upstream`, a real HTTP server started in-process.

It serves GET /v1/models, POST /v1/chat/completions (plain and streamed) and POST /v1/embeddings behind
`Authorization: Bearer <api_key>`, and records every request it gets. A test chooses how a chat answer behaves
by "script" words in the last message's content (for embeddings: in the first input string), so the
behaviour a test needs is stated in the prompt it sends through the gateway:

- `words:N`   the reply is the N words "w0 w1 ... w{N-1}" (without it: "hello from upstream");
- `delay:S`   sleep S seconds between streamed word chunks (once before a plain answer);
- `fail:N`    answer status N (429, 500, 503) with an OpenAI error body; a 429 carries `Retry-After: 3`;
- `hang:S`    sleep S seconds before answering anything (to trip the gateway's upstream timeout);
- `drop`      die mid-stream: two chunks, then the connection closes without the end of the body and without
              `data: [DONE]`; not streaming: the connection closes without an answer;
- `nousage`   leave out a stream's usage chunk even when `stream_options.include_usage` asks for it.

A token is a whitespace-separated word: prompt tokens are the words of all messages' string contents (or of
the embedding inputs), completion tokens the words of the reply. `max_tokens` below the reply's length cuts
the reply and makes the finish reason "length".

Streams use chunked transfer encoding and `Connection: close`, so a dropped stream is a protocol error for
the client (an incomplete body), as it is when a real upstream dies, rather than an ordinary end of body.
"""
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_KEY = "upstream-secret-0123456789"
DEFAULT_REPLY = "hello from upstream"
MODELS = ("tiny", "embed")
EMBEDDING = [0.1, 0.2, 0.3]
# A providers file (LLM_PROVIDERS_FILE) for this upstream, `{url}` its URL: `local` (credential in
# $LOCAL_LLM_KEY) serves `tiny` and `embed`, `misconfigured` ($WRONG_LLM_KEY) `tiny`.
PROVIDERS = """
[[providers]]
name = "local"
base_url = "{url}"
api_key_env = "LOCAL_LLM_KEY"
timeout_seconds = 2

[[providers.models]]
name = "tiny"
input_price = 1000
output_price = 1000
max_tokens = 64

[[providers.models]]
name = "embed"
input_price = 1000
output_price = 0

[[providers]]
name = "misconfigured"
base_url = "{url}"
api_key_env = "WRONG_LLM_KEY"

[[providers.models]]
name = "tiny"
input_price = 1000
output_price = 1000

[aliases]
small = "local/tiny"
"""
_SCRIPT_VALUES = {"words": int, "delay": float, "fail": int, "hang": float}
_SCRIPT_FLAGS = ("drop", "nousage")


class Upstream:
    """An OpenAI-compatible server on 127.0.0.1, a free port, in a daemon thread."""

    def __init__(self, api_key: str = API_KEY):
        self.api_key = api_key
        self.requests: list[dict] = []  # {"method", "path", "headers" (lower-case names), "body" (JSON or None)}
        self.disconnects = 0  # streams whose client went away before the end
        self.completed_streams = 0  # streams written to the end
        self._lock = threading.Lock()
        self._disconnected = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The OpenAI base URL, "http://127.0.0.1:<port>/v1" (still the same after `stop`)."""
        return f"http://127.0.0.1:{self._server.server_port}/v1"

    def start(self) -> "Upstream":
        """Bind a free loopback port and serve in a daemon thread; return self."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.upstream = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="upstream", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and cut the open connections, kept-alive ones included,
        so that a client sees an upstream that is gone rather than a pooled connection still answered."""
        if self._thread is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its handler
        self._thread.join()
        self._thread = None

    def __enter__(self) -> "Upstream":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def wait_for_disconnect(self, timeout: float = 10.0) -> bool:
        """Wait until a streaming client has gone away mid-stream; False when none did within `timeout`."""
        return self._disconnected.wait(timeout)

    def _record(self, request: dict) -> int:
        """Append `request` to `requests`; return its number, counted from 1."""
        with self._lock:
            self.requests.append(request)
            return len(self.requests)

    def _count_stream(self, completed: bool) -> None:
        """Count a stream that ended: written to the end, or cut short by its client (waking `wait_for_disconnect`)."""
        with self._lock:
            if completed:
                self.completed_streams += 1
            else:
                self.disconnects += 1
        if not completed:
            self._disconnected.set()

    def _track(self, connection: socket.socket, is_open: bool) -> None:
        """Keep the set of open connections that `stop` cuts."""
        with self._lock:
            if is_open:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


def _parse_script(text: str) -> dict:
    """The script words in `text`, e.g. {"words": 20, "delay": 0.2, "drop": True}; malformed or negative
    values are ignored, so an ordinary prompt has an empty script."""
    script = {}
    for token in text.split():
        name, _, value = token.partition(":")
        if token in _SCRIPT_FLAGS:
            script[token] = True
        elif name in _SCRIPT_VALUES:
            try:
                number = _SCRIPT_VALUES[name](value)
            except ValueError:
                continue
            if number >= 0:
                script[name] = number
    return script


def _count_words(texts: list) -> int:
    """Tokens as this upstream counts them: the whitespace-separated words of the strings in `texts`."""
    return sum(len(text.split()) for text in texts if isinstance(text, str))


class _Handler(BaseHTTPRequestHandler):
    """One connection to the upstream; HTTP/1.1, so plain answers keep the connection alive."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # TCP_NODELAY, as production servers set it: else a body written after its
    # headers waits for the client's delayed ACK (40 ms on every kept-alive answer)
    server_version = "upstream/1"

    def log_message(self, format, *args):
        """Keep the tests' output clean: no line on stderr per request."""

    def setup(self):
        super().setup()
        self.upstream: Upstream = self.server.upstream
        self.upstream._track(self.connection, is_open=True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.upstream._track(self.connection, is_open=False)

    def handle(self):
        try:
            super().handle()
        except ConnectionError:
            pass  # the client (or `stop`) went away while a plain answer was written: nothing to report

    def _answer(self):
        """Read the whole body, record the request, check the key, then route it."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        number = self.upstream._record({"method": self.command, "path": self.path, "body": body,
                                        "headers": {name.lower(): value for name, value in self.headers.items()}})
        path = self.path.split("?")[0]
        if self.headers.get("Authorization") != f"Bearer {self.upstream.api_key}":
            self._send_error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        elif (self.command, path) == ("GET", "/v1/models"):
            models = [{"id": model, "object": "model", "created": 0, "owned_by": "upstream"} for model in MODELS]
            self._send_json(200, {"object": "list", "data": models})
        elif self.command != "POST" or path not in ("/v1/chat/completions", "/v1/embeddings"):
            self._send_error(404, f"Invalid URL ({self.command} {path})", "invalid_request_error")
        elif not isinstance(body, dict):
            self._send_error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
        elif path == "/v1/chat/completions":
            self._chat(body, f"chatcmpl-up-{number}")
        else:
            self._embeddings(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def _chat(self, body: dict, id_: str):
        """Answer a chat completion, plain or streamed, as the last message's script says."""
        messages = [message for message in body.get("messages") or [] if isinstance(message, dict)]
        contents = [message.get("content") for message in messages]
        script = _parse_script(contents[-1] if contents and isinstance(contents[-1], str) else "")
        if self._hang_or_fail(script):
            return
        stream = bool(body.get("stream"))
        if script.get("drop") and not stream:
            self.close_connection = True
            return
        words = [f"w{i}" for i in range(script["words"])] if "words" in script else DEFAULT_REPLY.split()
        finish = "stop"
        limit = body.get("max_tokens")
        if isinstance(limit, int) and limit < len(words):
            words, finish = words[:max(limit, 0)], "length"
        prompt_tokens = _count_words(contents)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                 "total_tokens": prompt_tokens + len(words)}
        head = {"id": id_, "object": "chat.completion", "created": int(time.time()), "model": body.get("model")}
        if stream:
            include_usage = (body.get("stream_options") or {}).get("include_usage") and not script.get("nousage")
            self._stream(head, words, finish, usage if include_usage else None, script)
            return
        time.sleep(script.get("delay", 0))
        choice = {"index": 0, "message": {"role": "assistant", "content": " ".join(words)}, "finish_reason": finish}
        self._send_json(200, {**head, "choices": [choice], "usage": usage})

    def _stream(self, head: dict, words: list[str], finish: str, usage: dict | None, script: dict):
        """Write the answer as server-sent events, one chunk per word, flushing each at once; count the
        stream as completed, or as a disconnect when the client went away (a write failed)."""
        head = {**head, "object": "chat.completion.chunk"}

        def chunk(delta: dict, finish_reason: str | None = None) -> dict:
            return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": word if i == len(words) - 1 else word + " "}) for i, word in enumerate(words)]
        events.append(chunk({}, finish))
        if usage is not None:
            events.append({**head, "choices": [], "usage": usage})
        lines = [f"data: {json.dumps(event)}\n\n".encode() for event in events] + [b"data: [DONE]\n\n"]
        dropping = script.get("drop", False)
        if dropping:
            lines = lines[:2]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            for i, line in enumerate(lines):
                if 2 <= i <= len(words):  # lines[1..len(words)] are the word chunks: sleep between them
                    time.sleep(script.get("delay", 0))
                self._write_chunk(line)
            if dropping:
                return  # closing now leaves the chunked body unfinished
            self._write_chunk(b"")  # the last chunk: the body is complete
        except (BrokenPipeError, ConnectionResetError):
            self.upstream._count_stream(completed=False)
            return
        self.upstream._count_stream(completed=True)

    def _write_chunk(self, data: bytes):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _embeddings(self, body: dict):
        """Answer the same small embedding for every input; the first input string may script a hang or failure."""
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else inputs if isinstance(inputs, list) else []
        if self._hang_or_fail(_parse_script(inputs[0] if inputs and isinstance(inputs[0], str) else "")):
            return
        tokens = _count_words(inputs)
        data = [{"object": "embedding", "index": i, "embedding": EMBEDDING} for i in range(len(inputs))]
        self._send_json(200, {"object": "list", "data": data, "model": body.get("model"),
                              "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def _hang_or_fail(self, script: dict) -> bool:
        """Play the "hang:S" and "fail:N" scripts; True when a failure was answered."""
        time.sleep(script.get("hang", 0))
        status = script.get("fail")
        if status is None:
            return False
        self._send_error(status, f"The upstream was asked to fail with {status}.",
                         "rate_limit_error" if status == 429 else "server_error",
                         headers={"Retry-After": "3"} if status == 429 else None)
        return True

    def _send_error(self, status: int, message: str, type_: str, code: str | None = None,
                    headers: dict | None = None):
        """Answer an OpenAI error body."""
        self._send_json(status, {"error": {"message": message, "type": type_, "param": None, "code": code}}, headers)

    def _send_json(self, status: int, payload: dict, headers: dict | None = None):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    import urllib.request

    with Upstream() as up:
        def post(payload: dict) -> bytes:
            request = urllib.request.Request(f"{up.url}/chat/completions", data=json.dumps(payload).encode(),
                                             headers={"Authorization": f"Bearer {up.api_key}",
                                                      "Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.read()

        messages = [{"role": "user", "content": "say hello"}]
        print(json.loads(post({"model": "tiny", "messages": messages})))
        print(post({"model": "tiny", "messages": messages, "stream": True,
                    "stream_options": {"include_usage": True}}).decode())
        print("requests:", len(up.requests), "completed streams:", up.completed_streams)
