"""Hostile input (issue 10, items 5, 6, 9 and 11).

Every answer to bad input is a JSON:API error document from the one handler, with its status and a
`source` naming what is wrong; nothing reaches a 500 or logs a traceback (checked after every test
of this module); a body over MAX_CONTENT_LENGTH is refused before it is read; development secrets
are created once, atomically, and private from the first byte.
"""
import io
import json
import logging
import multiprocessing
import os
import socket
import stat
import subprocess
import sys
import textwrap
from types import SimpleNamespace
from urllib.parse import quote

import pytest

from app.models import ApiKey
from tests.helpers import JSONAPI, assert_error, resource
from tests.servers import ROOT, gunicorn, service_env, wait_until

LISTS = ["/v1/api-keys", "/v1/users", "/v1/users/{user}/api-keys", "/v1/audit-events"]
HUGE_IDS = ["99999999999999999999", "9223372036854775808", "2147483648"]
LIMIT = 1024 * 1024  # MAX_CONTENT_LENGTH's default


@pytest.fixture(autouse=True)
def no_error_or_traceback_logged(caplog):
    yield
    bad = [f"{record.levelname} {record.getMessage()}" for record in caplog.records
           if record.levelno >= logging.ERROR or record.exc_info]
    assert not bad, bad


@pytest.fixture
def admin(make):
    return make.user(admin=True)


@pytest.fixture
def admin_headers(make, admin):
    return make.headers(admin)


def jsonapi(client, method, path, headers=None, body=None, **kwargs):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body) if body is not None else None
    return client.open(path, method=method, headers=headers or {}, data=data, content_type=JSONAPI, **kwargs)


def list_path(template, make, admin):
    return template.format(user=admin.id)


# --- item 5: request bodies are limited ------------------------------------------------------------

class CountingInput(io.RawIOBase):
    """A wsgi.input of `size` bytes that counts what is read from it."""

    def __init__(self, size, fill=b" "):
        self.size, self.fill, self.read_bytes = size, fill, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        n = min(len(buffer), self.size - self.read_bytes)
        buffer[:n] = self.fill * n
        self.read_bytes += n
        return n


def body_routes(make, admin):
    """(method, path, headers) of routes that read a body, routes that do not, and no route at all."""
    service = {"X-API-Key": make.key(admin, scopes=["keys:verify"]).secret}
    key = make.key(admin, scopes=["keys:read", "keys:write"])
    session = make.headers(admin)
    return key, [
        ("POST", "/v1/users", {}),
        ("POST", "/v1/auth/login", {}),
        ("POST", "/v1/api-keys/verify", service),  # the fast path hands bodies over 16 KiB to Flask
        ("POST", "/v1/api-keys/verify", session),
        ("POST", "/v1/api-keys", session),
        ("PATCH", f"/v1/api-keys/{key.id}", session),
        ("POST", f"/v1/api-keys/{key.id}/rotate", session),
        ("DELETE", f"/v1/api-keys/{key.id}", session),  # reads no body: still refused, nothing deleted
        ("GET", "/v1/scopes", {}),
        ("GET", "/healthz", {}),
        ("POST", "/nowhere", {}),
    ]


def test_item5_a_body_over_the_limit_is_refused_with_413_before_it_is_read(app, client, make, admin):
    key, routes = body_routes(make, admin)
    for method, path, headers in routes:
        body = CountingInput(64 * 1024 * 1024)
        length = str(64 * 1024 * 1024) if path != "/nowhere" else "9" * 5000
        response = client.open(path, method=method, headers={**headers, "Content-Type": JSONAPI},
                               environ_overrides={"wsgi.input": body, "CONTENT_LENGTH": length})
        assert response.status_code == 413, (method, path, response.status_code)
        assert_error(response, 413)
        assert body.read_bytes == 0, (method, path, body.read_bytes)
    assert make.row(ApiKey, key.id) is not None


def test_item5_a_chunked_body_over_the_limit_is_refused_after_reading_at_most_the_limit(app, client, make, admin):
    key, routes = body_routes(make, admin)
    for method, path, headers in routes:
        body = CountingInput(64 * 1024 * 1024)
        response = client.open(path, method=method, headers={**headers, "Content-Type": JSONAPI},
                               environ_overrides={"wsgi.input": body, "HTTP_TRANSFER_ENCODING": "chunked",
                                                  "wsgi.input_terminated": True})
        assert response.status_code == 413, (method, path, response.status_code)
        assert_error(response, 413)
        assert body.read_bytes <= LIMIT + 64 * 1024, (method, path, body.read_bytes)
    assert make.row(ApiKey, key.id) is not None


@pytest.mark.parametrize("config_overrides", [{"MAX_CONTENT_LENGTH": 100}])
def test_item5_the_limit_is_configurable(client, make, admin):
    session = make.headers(admin)
    small = json.dumps(resource("api-keys", {"name": "x"}))
    assert len(small) < 100
    assert jsonapi(client, "POST", "/v1/api-keys", session, small).status_code == 201
    big = json.dumps(resource("api-keys", {"name": "x", "description": "y" * 100}))
    assert_error(jsonapi(client, "POST", "/v1/api-keys", session, big), 413)


def test_item5_a_chunked_body_within_the_limit_is_served(client, make):
    user = make.user()
    body = json.dumps({"email": user.email, "password": "correct horse battery staple"}).encode()
    response = client.post("/v1/auth/login", headers={"Content-Type": "application/json"},
                           environ_overrides={"wsgi.input": io.BytesIO(body), "HTTP_TRANSFER_ENCODING": "chunked",
                                              "wsgi.input_terminated": True})
    assert response.status_code == 200, response.get_data(as_text=True)
    meta = response.get_json()["meta"]
    make.secrets.add(meta["access_token"], meta["refresh_token"])


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", " 5"])
def test_item5_a_content_length_that_is_not_a_number_is_400(client, length):
    response = client.post("/v1/users", headers={"Content-Type": JSONAPI},
                           environ_overrides={"wsgi.input": CountingInput(10), "CONTENT_LENGTH": length})
    assert_error(response, 400)


def test_item5_gunicorn_limits_the_request_line_and_headers():
    from app import gunicorn_conf

    assert 1024 <= gunicorn_conf.limit_request_line <= 8190
    assert 20 <= gunicorn_conf.limit_request_fields <= 100
    assert 1024 <= gunicorn_conf.limit_request_field_size <= 8190


def read_until_closed(sock):
    chunks = []
    while chunk := sock.recv(65536):  # the sync worker closes the connection after its answer
        chunks.append(chunk)
    return b"".join(chunks).decode("latin-1")


def test_item5_under_gunicorn_a_large_content_length_is_answered_before_the_body_is_sent(tmp_path):
    env = service_env(f"sqlite:///{tmp_path / 'g.db'}", "memory://")
    with gunicorn(env, workers=1) as base:
        port = int(base.rsplit(":", 1)[1])
        for method, path in [("GET", "/v1/scopes"), ("POST", "/v1/users"), ("DELETE", "/v1/api-keys/1")]:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {JSONAPI}\r\n"
                             f"Content-Length: {64 * 1024 * 1024}\r\n\r\n".encode())
                answer = read_until_closed(sock)  # no body sent: a server reading it would wait for it
            assert answer.startswith("HTTP/1.1 413"), (path, answer[:200])
            assert json.loads(answer.partition("\r\n\r\n")[2])["errors"][0]["status"] == "413"
        # gunicorn's own limits (its own answers, before the application): the request line, the headers
        for request, statuses in [(f"GET /v1/scopes?pad-x={'a' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n", ("414",)),
                                  ("GET /v1/scopes HTTP/1.1\r\nHost: x\r\n"
                                   + "".join(f"X-{n}: y\r\n" for n in range(60)) + "\r\n", ("400", "431")),
                                  (f"GET /v1/scopes HTTP/1.1\r\nHost: x\r\nX-Big: {'b' * 9000}\r\n\r\n",
                                   ("400", "431"))]:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(request.encode())
                assert read_until_closed(sock).split(" ")[1] in statuses, request[:60]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # and within them, served
            sock.sendall(f"GET /v1/scopes?pad-x={'a' * 7000} HTTP/1.1\r\nHost: x\r\n"
                         f"{''.join(f'X-{n}: y' + chr(13) + chr(10) for n in range(40))}\r\n".encode())
            assert read_until_closed(sock).startswith("HTTP/1.1 200")


# --- item 6: page parameters ------------------------------------------------------------------------

BAD_PAGES = [("page[size]", value) for value in ["-1", "0", "101", "abc", "1.5", "", "1,2", "+5", " 5", "1e2",
                                                  "100000000000000000000"]]
BAD_PAGES += [("page[number]", value) for value in ["-1", "0", "abc", "2.0", "", "1,2", "100000000000000000000",
                                                     "1000001"]]


@pytest.mark.parametrize("template", LISTS)
def test_item6_page_size_and_number_are_validated_on_every_list(client, make, admin, admin_headers, template):
    path = list_path(template, make, admin)
    for name, value in BAD_PAGES:
        response = client.get(f"{path}?{quote(name)}={quote(value)}", headers=admin_headers)
        error = assert_error(response, 400)
        assert error["source"] == {"parameter": name}, (name, value, error)


@pytest.mark.parametrize("template", LISTS)
def test_item6_valid_pages_are_served(client, make, admin, admin_headers, template):
    make.user()
    make.user()
    for number in range(3):  # through the API: three keys and three audit events
        response = jsonapi(client, "POST", "/v1/api-keys", admin_headers, resource("api-keys", {"name": f"k{number}"}))
        assert response.status_code == 201
        make.secrets.add(response.get_json()["data"]["attributes"]["secret"])
    path = list_path(template, make, admin)
    response = client.get(f"{path}?page[size]=1&page[number]=2", headers=admin_headers)
    assert response.status_code == 200
    assert len(response.get_json()["data"]) == 1
    assert client.get(f"{path}?page[size]=100&page[number]=1000000", headers=admin_headers).get_json()["data"] == []


# --- item 9: nothing reaches a 500 ------------------------------------------------------------------

DEEP_FILTERS = ["[" * 5000 + "]" * 5000, '{"and":' * 3000 + "[]" + "}" * 3000,
                '{"not":' * 50 + '{"name":"name","op":"eq","val":"x"}' + "}" * 50]


@pytest.mark.parametrize("template", LISTS)
@pytest.mark.parametrize("who", ["anonymous", "admin"])
def test_item9_a_deeply_nested_filter_is_400(client, make, admin, admin_headers, template, who):
    path = list_path(template, make, admin)
    for text in DEEP_FILTERS:
        response = client.get(f"{path}?filter={quote(text)}", headers=admin_headers if who == "admin" else {})
        error = assert_error(response, 400)
        assert error["source"] == {"parameter": "filter"}


def deep(levels):
    return "[" * levels + "]" * levels


@pytest.mark.parametrize("levels", [100_000, 200])
def test_item9_a_deeply_nested_body_is_400(client, make, admin, levels):
    service = {"X-API-Key": make.key(admin, scopes=["keys:verify"]).secret}
    key = make.key(admin, scopes=["keys:read", "keys:write"])
    session = make.headers(admin)
    inner = deep(levels)
    bodies = {
        ("POST", "/v1/users", "{}"): '{"data":{"type":"users","attributes":{"email":' + inner + '}}}',
        ("POST", "/v1/auth/login", "{}"): '{"email":' + inner + ',"password":"x"}',
        ("POST", "/v1/api-keys", "session"): '{"data":{"type":"api-keys","attributes":{"metadata":{"a":'
                                             + inner + '}}}}',
        ("PATCH", f"/v1/api-keys/{key.id}", "session"): '{"data":{"type":"api-keys","id":"' + str(key.id) + '",'
                                                         '"attributes":{"metadata":{"a":' + inner + '}}}}',
        ("POST", f"/v1/api-keys/{key.id}/rotate", "session"): '{"grace-period":' + inner + '}',
        ("POST", "/v1/api-keys/verify", "service"): '{"key":' + inner + '}',
        ("POST", "/v1/api-keys/verify", "session"): '{"key":' + inner + '}',
        ("POST", "/v1/users", "{} bare"): inner,
    }
    headers = {"{}": {}, "{} bare": {}, "session": session, "service": service}
    for (method, path, who), body in bodies.items():
        for content_type in (JSONAPI, "application/json"):
            response = client.open(path, method=method, data=body, content_type=content_type, headers=headers[who])
            error = assert_error(response, 400)
            assert error["source"] == {"pointer": "/"}, (method, path, who, error)


ID_ROUTES = [("GET", "/v1/api-keys/{id}"), ("PATCH", "/v1/api-keys/{id}"), ("DELETE", "/v1/api-keys/{id}"),
             ("GET", "/v1/users/{id}"), ("PATCH", "/v1/users/{id}"), ("DELETE", "/v1/users/{id}"),
             ("GET", "/v1/audit-events/{id}"), ("GET", "/v1/users/{id}/api-keys"),
             ("GET", "/v1/api-keys/{id}/relationships/user"), ("GET", "/v1/users/{id}/relationships/api-keys"),
             ("PATCH", "/v1/users/{id}/relationships/api-keys"), ("GET", "/v1/api-keys/{id}/usage")]
ID_ROUTES += [("POST", f"/v1/api-keys/{{id}}/{action}")
              for action in ("revoke", "suspend", "reactivate", "rotate", "quota/reset", "budget/reset")]


@pytest.mark.parametrize("huge", HUGE_IDS)
def test_item9_an_id_beyond_the_id_column_is_404(client, admin_headers, huge):
    for method, template in ID_ROUTES:
        path = template.format(id=huge)
        type_ = "users" if path.startswith("/v1/users") and "relationships" not in path else "api-keys"
        body = resource(type_, {}, id_=huge) if method == "PATCH" else None
        error = assert_error(jsonapi(client, method, path, admin_headers, body), 404)
        assert error["source"] == {"parameter": "id"}, (method, path)
        assert_error(jsonapi(client, method, path, {}, body), 401)  # as for any missing id


USAGE_DATES = ["filter[to]=0001-01-01", "filter[to]=0001-01-01T00:00:00%2B14:00",
               "filter[from]=0001-01-01&filter[to]=0001-01-02",
               "filter[from]=0001-01-01T00:00:00-14:00&filter[to]=0001-01-02", "group-by=day&filter[to]=0001-01-01",
               "filter[to]=9999-12-31T23:59:59-14:00", "filter[from]=9999-12-31",
               "filter[from]=9999-12-30&filter[to]=9999-12-31T23:00:00",
               "filter[from]=9999-12-31T23:00:00-14:00&filter[to]=9999-12-31T23:59:59-14:00",
               "filter[to]=1969-12-31", "filter[to]=%00"]


@pytest.mark.parametrize("query", USAGE_DATES)
def test_item9_edge_dates_in_usage_are_400(client, make, admin, admin_headers, query):
    key = make.key(admin)
    for path in (f"/v1/api-keys/{key.id}/usage", "/v1/usage"):
        error = assert_error(client.get(f"{path}?{query}", headers=admin_headers), 400)
        assert error["source"]["parameter"] in ("filter[from]", "filter[to]"), (path, query, error)


def test_item9_usage_still_answers_a_sane_window(client, make, admin, admin_headers):
    key = make.key(admin)
    response = client.get(f"/v1/api-keys/{key.id}/usage?filter[from]=2024-01-01T00:00:00%2B02:00"
                          "&filter[to]=2024-01-02",
                          headers=admin_headers)
    assert response.status_code == 200
    assert response.get_json()["data"]["attributes"]["from"] == "2024-01-01T00:00:00+02:00"


BAD_QUERIES = [
    # sparse fieldsets of an unknown type, and field lists that cannot be
    ("fields[junk]", "x", "fields[junk]"), ("fields[]", "x", "fields[]"), ("fields[api_key]", "", "fields[api_key]"),
    # sort and include are bounded
    ("sort", ",".join(["name"] * 3000), "sort"), ("include", ",".join(["user"] * 5000), "include"),
    # NUL bytes never reach the database
    ("filter[name]", "\x00", "filter[name]"), ("filter[tag]", "a\x00", "filter[tag]"),
    ("filter", '{"name":"name","op":"eq","val":"\\u0000"}', "filter"),
    ("filter", '{"name":"name","op":"eq","val":"\\ud800"}', "filter"),
    # filters of the wrong shape
    ("filter", '"x"', "filter"), ("filter", "[1]", "filter"), ("filter", '{"and":1}', "filter"),
    ("filter", '{"not":1}', "filter"), ("filter", '{"or":[]}', "filter"), ("filter", "null", "filter"),
    ("filter", '{"name":"name","op":"__class__","val":"x"}', "filter"),
    ("filter", '{"name":"name","op":"eq","val":{"a":1}}', "filter"),
    ("filter", '{"name":"name","op":"in_","val":[[1]]}', "filter"),
    ("filter", '{"name":"name","op":"eq","val":1.5}', "filter"),
    ("filter", '{"name":"created-at","op":"gt","val":"9999-12-31T23:59:59-14:00"}', "filter"),
    ("filter", '{"name":"created_at","op":"between","val":["0001-01-01T00:00:00+14:00","2020-01-01"]}', "filter"),
    ("filter[created_at]", "9999-12-31T23:59:59-14:00", "filter[created_at]"),
    # duplicated parameters are ambiguous
    ("page[size]", ["1", "2"], "page[size]"), ("sort", ["name", "-name"], "sort"),
    ("filter", ['{"name":"name","op":"eq","val":"a"}'] * 2, "filter"),
]


@pytest.mark.parametrize("name, value, parameter", BAD_QUERIES, ids=[f"{n}={str(v)[:40]}" for n, v, _ in BAD_QUERIES])
def test_item9_hostile_list_queries_are_400(client, admin_headers, name, value, parameter):
    values = value if isinstance(value, list) else [value]
    query = "&".join(f"{quote(name)}={quote(v)}" for v in values)
    error = assert_error(client.get(f"/v1/api-keys?{query}", headers=admin_headers), 400)
    assert error["source"] == {"parameter": parameter}, error


# JSON:API 1.0 reserves all-lowercase names: those it does not define are 400 on every route; a name
# with another character is the implementation's, and unknown ones are ignored.
NAMED_ROUTES = [("GET", "/v1/api-keys"), ("GET", "/v1/users/{user}"), ("GET", "/v1/scopes"), ("GET", "/v1/usage"),
                ("GET", "/v1/audit-events"), ("POST", "/v1/auth/logout"), ("POST", "/v1/api-keys/verify")]


@pytest.mark.parametrize("name", ["foo", "id", "type", "includes", "pages", "q"])
@pytest.mark.parametrize("method, template", NAMED_ROUTES)
def test_an_unknown_all_lowercase_query_parameter_is_400(client, admin, admin_headers, method, template, name):
    path = template.format(user=admin.id)
    error = assert_error(client.open(f"{path}?{name}=1", method=method, headers=admin_headers), 400)
    assert error["source"] == {"parameter": name}, error


@pytest.mark.parametrize("name", ["fooBar", "foo-bar", "foo_bar", "foo[bar]", "Foo", "x1"])
def test_an_implementation_specific_query_parameter_is_not_refused(client, admin_headers, name):
    assert client.get(f"/v1/api-keys?{quote(name)}=1", headers=admin_headers).status_code == 200


USER_FILTERS = [
    '{"name":"email","op":"__class__","val":"x"}', '{"name":"email","op":"op","val":"x"}',
    '{"name":"email","op":"in_","val":"x"}', '{"name":"email","op":"between","val":[1]}',
    '{"name":"email","op":"any","val":"x"}', '{"name":"email","op":"has","val":"x"}',
    '{"name":"api_keys","op":"any","val":{"name":"name","op":"eq","val":"x"}}',
    '{"name":"api-keys.name","op":"eq","val":"x"}', '{"name":"email","op":"eq","field":"id"}',
    '{"name":"id","op":"eq","val":"99999999999999999999"}', '{"name":"id","op":"eq","val":99999999999999999999}',
    '{"name":"id","op":"eq","val":true}', '{"name":"is_admin","op":"eq","val":"maybe"}',
    '{"name":"email","op":"eq","val":5}', '{"name":"email","op":"eq","val":true}',
    '{"name":"email","op":"in_","val":["1"]}', '{"name":"email","op":"notin_","val":[[1]]}',
    '{"name":"created_at","op":"gt","val":"9999-12-31T23:59:59-14:00"}',
    '{"name":"created_at","op":"in_","val":["2020"]}', '{"name":"email","op":"eq","val":"\\u0000"}',
    '{"name":"email","op":"eq","val":"\\ud800"}', '{"name":"password","op":"eq","val":"x"}',
]


@pytest.mark.parametrize("text", USER_FILTERS)
def test_item9_filters_on_users_of_the_wrong_shape_or_type_are_400(client, admin_headers, text):
    error = assert_error(client.get(f"/v1/users?filter={quote(text)}", headers=admin_headers), 400)
    assert error["source"] == {"parameter": "filter"}


@pytest.mark.parametrize("query", ["filter[id]=99999999999999999999", "filter[is_admin]=x", "filter[email]=%00",
                                   "filter[created_at]=9999-12-31T23:59:59-14:00", "filter[email]=a,1"])
def test_item9_simple_filters_on_users_that_do_not_fit_are_400(client, admin_headers, query):
    error = assert_error(client.get(f"/v1/users?{query}", headers=admin_headers), 400)
    assert error["source"]["parameter"].startswith("filter")


@pytest.mark.parametrize("text", [
    '{"name":"actor_user_id","op":"in_","val":["5","x"]}', '{"name":"actor_user_id","op":"eq","val":"99999999999"}',
    '{"name":"action","op":"eq","val":"\\u0000"}', '{"name":"created_at","op":"gt","val":"9999-12-31T23:59:59-14:00"}',
])
def test_item9_audit_filters_that_do_not_fit_are_400(client, admin_headers, text):
    error = assert_error(client.get(f"/v1/audit-events?filter={quote(text)}", headers=admin_headers), 400)
    assert error["source"] == {"parameter": "filter"}


def test_item9_a_list_filter_on_text_compares_text(client, make, admin, admin_headers):
    make.key(admin, name="2024")
    make.key(admin, name="1.5e3")
    make.key(admin, name="ci")
    for values, names in [(["2024", "ci"], {"2024", "ci"}), (["1.5e3"], {"1.5e3"}), (["2024-01-01"], set())]:
        for op in ("in_", "notin_"):
            text = json.dumps({"name": "name", "op": op, "val": values})
            response = client.get(f"/v1/api-keys?filter={quote(text)}", headers=admin_headers)
            assert response.status_code == 200, response.get_data(as_text=True)
            found = {item["attributes"]["name"] for item in response.get_json()["data"]}
            assert found == (names if op == "in_" else {"2024", "1.5e3", "ci"} - names)
    text = json.dumps({"name": "name", "op": "between", "val": ["1", "3"]})
    response = client.get(f"/v1/api-keys?filter={quote(text)}", headers=admin_headers)
    assert {item["attributes"]["name"] for item in response.get_json()["data"]} == {"2024", "1.5e3"}


def test_item9_filters_still_work(client, make, admin, admin_headers):
    make.key(admin, name="alpha", description="deploys things")
    make.key(admin, name="bravo")
    cases = [({"name": "name", "op": "eq", "val": "bravo"}, {"bravo"}),
             ({"name": "description", "op": "ilike", "val": "%DEPLOYS%"}, {"alpha"}),
             ({"or": [{"name": "name", "op": "startswith", "val": "al"},
                      {"name": "name", "op": "endswith", "val": "vo"}]}, {"alpha", "bravo"}),
             ({"not": {"name": "name", "op": "eq", "val": "alpha"}}, {"bravo"}),
             ({"and": [{"name": "created-at", "op": "gt", "val": "2000-01-01T00:00:00Z"},
                       {"name": "last-used-at", "op": "is_", "val": None}]}, {"alpha", "bravo"}),
             ({"name": "expires_at", "op": "isnot", "val": None}, set()),
             ({"name": "created_at", "op": "between", "val": ["2000-01-01", "9999-01-01T00:00:00+00:00"]},
              {"alpha", "bravo"})]
    for tree, names in cases:
        response = client.get(f"/v1/api-keys?filter={quote(json.dumps(tree))}", headers=admin_headers)
        assert response.status_code == 200, (tree, response.get_data(as_text=True))
        assert {item["attributes"]["name"] for item in response.get_json()["data"]} == names, tree
    tree = {"and": [{"name": "is-admin", "op": "eq", "val": True}, {"name": "email", "op": "ilike", "val": "%"}]}
    response = client.get(f"/v1/users?filter={quote(json.dumps(tree))}&filter[email]={quote(admin.email)}",
                          headers=admin_headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert [item["id"] for item in response.get_json()["data"]] == [str(admin.id)]


@pytest.mark.parametrize("attributes, pointer", [
    ({"name": "a\x00b"}, "/data/attributes/name"),
    ({"name": "x", "description": "\ud800"}, "/data/attributes/description"),
    ({"name": "x", "metadata": {"team": ["ok", "\x00"]}}, "/data/attributes/metadata/team/1"),
    ({"name": "x", "metadata": {"\udfff": 1}}, "/data/attributes/metadata"),
])
def test_item9_text_with_nul_or_a_lone_surrogate_is_422(client, make, admin, admin_headers, attributes, pointer):
    key = make.key(admin, scopes=["keys:read", "keys:write"])
    error = assert_error(jsonapi(client, "POST", "/v1/api-keys", admin_headers, resource("api-keys", attributes)), 422)
    assert error["source"] == {"pointer": pointer}
    document = resource("api-keys", attributes, id_=key.id)
    error = assert_error(jsonapi(client, "PATCH", f"/v1/api-keys/{key.id}", admin_headers, document), 422)
    assert error["source"] == {"pointer": pointer}


@pytest.mark.parametrize("user_id", HUGE_IDS)
def test_item9_a_relationship_to_a_huge_id_is_not_found(client, admin_headers, user_id):
    document = resource("api-keys", {"name": "x"}, relationships={"user": {"data": {"type": "users", "id": user_id}}})
    error = assert_error(jsonapi(client, "POST", "/v1/api-keys", admin_headers, document), 404)
    assert error["source"] == {"pointer": "/data/relationships/user"}


@pytest.mark.parametrize("body", [b"[]", b"1", b'"x"', b"null", b"\xff\xfe{", b"\xc3\x28", b'{"a": "\xff"}',
                                  b'{"grace-period": NaN}', b'{"key": Infinity}', b'{"cost": -Infinity}',
                                  b'{"cost": 1e400}',
                                  b'{"data":{"type":"api-keys","attributes":{"name":"x","metadata":{"a":-1e400}}}}',
                                  b'{"data":{"type":"api-keys","attributes":{"name":"x","quota":{"limit":NaN}}}}',
                                  b'{"data":[]}', b'{"data":"x"}'])
def test_item9_bodies_that_are_not_json_objects_are_400(client, make, admin, admin_headers, body):
    key = make.key(admin, scopes=["keys:read", "keys:write"])
    routes = [("POST", "/v1/users", {}), ("POST", "/v1/api-keys", admin_headers),
              ("PATCH", f"/v1/api-keys/{key.id}", admin_headers)]
    if b"data" not in body:  # a plain object with a `data` member is a plain object to these
        routes += [("POST", "/v1/auth/login", {}), ("POST", f"/v1/api-keys/{key.id}/rotate", admin_headers),
                   ("POST", "/v1/api-keys/verify", admin_headers)]
    for method, path, headers in routes:
        for content_type in (JSONAPI, "application/json"):
            response = client.open(path, method=method, data=body, content_type=content_type, headers=headers)
            assert response.status_code == 400, (method, path, body, response.get_data(as_text=True))
            error = assert_error(response, 400)
            assert error.get("source", {}).get("pointer") in ("/", "/data"), (method, path, error)


# --- item 11: development secrets --------------------------------------------------------------------

def _fake_app(instance):
    return SimpleNamespace(instance_path=str(instance), config={"ENV_NAME": "development", "SECRET_KEY": None,
                                                                 "JWT_SECRET_KEY": None})


def _configure_in_child(instance, barrier, results):
    from app import _configure_secrets

    os.umask(0o022)
    app = _fake_app(instance)
    barrier.wait()
    try:
        _configure_secrets(app)
        results.put((app.config["SECRET_KEY"], app.config["JWT_SECRET_KEY"]))
    except Exception as error:  # reported to the parent, which fails the test with it
        results.put(repr(error))


def test_item11_concurrent_first_boots_create_one_secrets_file_and_agree(tmp_path):
    context = multiprocessing.get_context("fork")
    workers = 8
    for round_ in range(15):
        instance = tmp_path / f"round{round_}"
        instance.mkdir()
        barrier, results = context.Barrier(workers), context.Queue()
        processes = [context.Process(target=_configure_in_child, args=(instance, barrier, results))
                     for _ in range(workers)]
        for process in processes:
            process.start()
        answers = [results.get(timeout=30) for _ in processes]
        for process in processes:
            process.join(timeout=30)
        assert all(isinstance(answer, tuple) for answer in answers), answers
        assert len(set(answers)) == 1, f"round {round_}: workers disagree: {len(set(answers))} different secrets"
        stored = json.loads((instance / "secrets.json").read_text())
        assert (stored["SECRET_KEY"], stored["JWT_SECRET_KEY"]) == answers[0]
        assert stat.S_IMODE((instance / "secrets.json").stat().st_mode) == 0o600
        assert sorted(p.name for p in instance.iterdir() if p.name != "secrets.json.lock") == ["secrets.json"]


def test_item11_the_secrets_file_is_0600_from_creation(tmp_path, monkeypatch):
    from app import _configure_secrets

    monkeypatch.setattr(os, "chmod", lambda *args, **kwargs: None)  # a chmod after the fact would not count
    previous = os.umask(0o022)
    try:
        app = _fake_app(tmp_path)
        _configure_secrets(app)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "secrets.json").stat().st_mode) == 0o600
    # a second boot reads it, and keeps it
    again = _fake_app(tmp_path)
    _configure_secrets(again)
    assert again.config == app.config


def test_item11_a_secrets_file_that_is_not_json_stops_the_boot_with_a_message(tmp_path):
    from app import _configure_secrets

    (tmp_path / "secrets.json").write_text('{"SECRET_KE')
    with pytest.raises(RuntimeError, match="secrets.json"):
        _configure_secrets(_fake_app(tmp_path))


BOOT = textwrap.dedent("""
    import json, os, sys, time
    os.umask(0o022)
    from app import create_app
    from app.extensions import db
    from sqlalchemy import text
    open(os.path.join(sys.argv[2], str(os.getpid())), "w").close()  # imported: ready
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.001)
    app = create_app()
    with app.app_context():
        db.session.execute(text("SELECT 1"))  # SQLite creates the file on the first connection
    print(json.dumps([app.config["SECRET_KEY"], app.config["JWT_SECRET_KEY"]]))
""")


def test_item11_concurrent_create_app_makes_a_private_instance_folder_secrets_and_database(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    for name in ("app", "config.py", "migrations"):
        (project / name).symlink_to(ROOT / name)
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "SECRET_KEY", "JWT_SECRET_KEY", "RATELIMIT_STORAGE_URI", "REDIS_URL")}
    env.update(PYTHONPATH=str(project), LATCHKEY_ENV="development", RATELIMIT_STORAGE_URI="memory://")
    go, ready = tmp_path / "go", tmp_path / "ready"
    ready.mkdir()
    processes = [subprocess.Popen([sys.executable, "-c", BOOT, str(go), str(ready)], cwd=project, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)]
    try:
        wait_until(lambda: len(list(ready.iterdir())) == len(processes)
                   or any(process.poll() is not None for process in processes), 120, "every boot to import the app")
    finally:
        go.touch()  # all at once (or, on a timeout, let them end)
    outputs = [process.communicate(timeout=120) for process in processes]
    assert all(process.returncode == 0 for process in processes), [err[-2000:] for _, err in outputs]
    answers = {out.strip().splitlines()[-1] for out, _ in outputs}
    assert len(answers) == 1, answers
    instance = project / "instance"
    assert stat.S_IMODE(instance.stat().st_mode) == 0o700
    assert stat.S_IMODE((instance / "secrets.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((instance / "latchkey.db").stat().st_mode) == 0o600


@pytest.mark.parametrize("path, sort", [("/v1/api-keys", "scopes"), ("/v1/api-keys", "-metadata"),
                                        ("/v1/api-keys", "name,tags"), ("/v1/api-keys", "allowed-ips"),
                                        ("/v1/audit-events", "changes")])
def test_sorting_on_an_attribute_held_as_json_is_a_400(client, make, path, sort):
    """PostgreSQL has no order for json values (it answered 500); found by schemathesis."""
    owner = make.user(admin=True)
    make.key(owner)
    response = client.get(path, query_string={"sort": sort}, headers=make.headers(owner))
    assert_error(response, 400)
    assert response.get_json()["errors"][0]["source"] == {"parameter": "sort"}


@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE"])
@pytest.mark.parametrize("data", [[None], [0], [False], ["1"], [{"type": "api-keys"}], 7, "x"])
def test_a_relationship_body_that_is_not_linkage_is_a_400(client, make, method, data):
    """The library failed with a TypeError (500) on these; found by schemathesis."""
    owner = make.user()
    key = make.key(owner)
    for path in (f"/v1/users/{owner.id}/relationships/api-keys", f"/v1/api-keys/{key.id}/relationships/user"):
        response = client.open(path, method=method, json={"data": data}, headers=make.headers(owner),
                               content_type="application/vnd.api+json")
        assert response.status_code in (400, 403, 405), (path, response.status_code)
        assert response.status_code != 500
