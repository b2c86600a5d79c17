"""A page in headless Chromium on one origin uses Latchkey, under gunicorn, on another: what its
script can read of the answers is what CORS lets through (app/api/helpers/cors.py).

Needs Debian's chromium (/usr/bin/chromium) and the `playwright` package, which drives it (never
`playwright install`: its own browser builds cannot be downloaded here). Skipped without chromium
on a developer's machine; in CI (CI set) a missing chromium is a failure.
"""
import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.console_helpers import needs_chromium  # and its `browser` fixture (a plugin: tests/conftest.py)
from tests.helpers import PASSWORD
from tests.servers import free_port, fresh_database, gunicorn, run_migrations, service_env

REQUESTS_PER_MINUTE = 4  # per endpoint: the key's creation counts on /v1/api-keys too

pytestmark = needs_chromium

# The page's script: sign up, log in, create a key (its URL is in Location), then list keys until
# the rate limit answers 429; it returns what it could read of each answer.
PAGE = """<!doctype html>
<title>Latchkey console</title>
<script>
const JSONAPI = "application/vnd.api+json";

async function send(step, expected, url, method, token, document) {
  const headers = {Accept: JSONAPI};
  if (token) headers.Authorization = "Bearer " + token;
  if (document) headers["Content-Type"] = JSONAPI;
  const response = await fetch(url, {method, headers, body: document && JSON.stringify(document)});
  if (expected && response.status !== expected) {
    throw new Error(`${step} answered ${response.status}: ${await response.text()}`);
  }
  return response;
}

async function runFlow(api, email, password) {
  await send("sign-up", 201, api + "/v1/users", "POST", null,
             {data: {type: "users", attributes: {email, password}}});
  const login = await send("login", 200, api + "/v1/auth/login", "POST", null, {email, password});
  const token = (await login.json()).meta.access_token;
  const created = await send("key creation", 201, api + "/v1/api-keys", "POST", token,
                             {data: {type: "api-keys", attributes: {name: "from a browser"}}});
  const key = (await created.json()).data;
  const listings = [];
  for (let i = 0; i < 10; i++) {
    const response = await send("listing", null, api + "/v1/api-keys", "GET", token);
    listings.push({status: response.status, limit: response.headers.get("X-RateLimit-Limit"),
                   remaining: response.headers.get("X-RateLimit-Remaining"),
                   retryAfter: response.headers.get("Retry-After")});
    if (response.status === 429) break;
  }
  return {keyId: key.id, secretShown: typeof key.attributes.secret === "string",
          location: created.headers.get("Location"), listings};
}
</script>
"""


@pytest.fixture
def page_origin(tmp_path):
    """Serve PAGE as index.html on a port of its own (another origin than the service's)."""
    (tmp_path / "index.html").write_text(PAGE)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def service(tmp_path, page_origin):
    with fresh_database(tmp_path) as database_url:
        env = service_env(database_url, "memory://", CORS_ORIGINS=page_origin,
                          RATE_LIMIT_DEFAULTS=f"{REQUESTS_PER_MINUTE} per minute")
        run_migrations(env)
        with gunicorn(env, workers=1) as base:
            yield base


def test_a_page_on_another_origin_reads_location_and_the_limit_headers(browser, service, page_origin):
    page = browser.new_page()
    page.goto(f"{page_origin}/index.html")
    result = page.evaluate("([api, email, password]) => runFlow(api, email, password)",
                           [service, "browser@example.com", PASSWORD])

    assert result["secretShown"], result
    assert result["location"] == f"{service}/v1/api-keys/{result['keyId']}"  # absolute, like the links
    *served, refused = result["listings"]
    # The key's creation spent one request of the endpoint's limit.
    assert [listing["remaining"] for listing in served] == [str(n) for n in range(REQUESTS_PER_MINUTE - 2, -1, -1)]
    assert all(listing["status"] == 200 and listing["limit"] == str(REQUESTS_PER_MINUTE) for listing in served)
    assert refused["status"] == 429 and refused["remaining"] == "0"
    assert 0 < int(refused["retryAfter"]) <= 60
