"""The yardsticks, served with the same gunicorn settings as Latchkey: a bare Flask JSON endpoint,
and a bare Flask proxy to an OpenAI-compatible upstream (BENCH_PROXY_UPSTREAM, its base URL).

The proxy is what any Flask gateway costs at the least: it passes the body, the Authorization
header and the answer (streamed as it arrives) on, through the same HTTP client as the gateway
(urllib3, a pool per process) and nothing else: no key, no limits, no accounting, no checks."""
import os

import urllib3
from flask import Flask, Response, jsonify, request

app = Flask(__name__)
_pools: dict = {}


@app.get("/healthz")
def healthz():
    return jsonify(status="ok")


@app.route("/json", methods=["GET", "POST"])
def bare_json():
    """Parse the JSON body if any, answer a small JSON document: no auth, no limits, no database."""
    body = request.get_json(silent=True) or {}
    return jsonify(meta={"valid": True, "code": "VALID", "echo": len(body)})


@app.post("/proxy/<path:path>")
def bare_proxy(path):
    """POST the body to the upstream's `path`; answer what it answers, passed on as it arrives."""
    base = os.environ["BENCH_PROXY_UPSTREAM"]
    pool = _pools.get(os.getpid())
    if pool is None:
        pool = _pools[os.getpid()] = urllib3.connection_from_url(base, maxsize=64, retries=False)
    headers = {name: request.headers[name] for name in ("Authorization", "Content-Type", "Accept")
               if name in request.headers}
    answer = pool.urlopen("POST", f"{urllib3.util.parse_url(base).path}/{path}", body=request.get_data(),
                          headers=headers, redirect=False, preload_content=False, decode_content=False)

    content_type = answer.headers.get("Content-Type")
    if "Content-Length" in answer.headers:  # a plain answer: passed on whole, with its length
        body = answer.read()
        answer.release_conn()
        return Response(body, answer.status, content_type=content_type)

    def relay():
        try:
            yield from iter(lambda: answer.read1(64 * 1024), b"")
        except GeneratorExit:  # the client went away: so does the upstream request
            answer.close()
            raise
        finally:
            answer.release_conn()
    return Response(relay(), answer.status, content_type=content_type)
