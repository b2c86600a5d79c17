"""Real JSON:API clients walk what a console does, against Latchkey under gunicorn: sign up, log
in, list keys, create one (its secret is shown once), fetch it, rename it, paginate and follow the
links, filter, sort, include the owner, revoke, delete.

Each client keeps its defaults but for the base URL and the credentials; anything more it needed
is said where it is configured (and in the README's client section). The npm clients (kitsu,
devour-client) run under Node from tests/clients/, installed there with `npm ci`; without them
these tests are skipped on a developer's machine and fail in CI (CI set).
"""
import logging
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
import requests
from jsonapi_client import Filter, Inclusion, Modifier, Session
from jsonapi_requests import data, orm

from tests.helpers import PASSWORD
from tests.servers import fresh_database, gunicorn, run_migrations, service_env

CLIENTS = Path(__file__).parent / "clients"
# jsonapi-client's schema: Session.create needs one for each type it creates; with one, the client
# keeps only the relationships it declares, and logs at WARNING the values of the attributes it leaves
# out (here, never a password or a key's secret). No types: each resource read is validated against
# it, and an answer has no password, a fetched key no secret.
SCHEMA = {"users": {"properties": {"email": {}, "password": {}}},
          "api-keys": {"properties": {"name": {}, "secret": {}, "user": {"relation": "to-one", "resource": ["users"]}}}}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with fresh_database(tmp_path_factory.mktemp("clients")) as database_url:
        env = service_env(database_url, "memory://")
        run_migrations(env)
        with gunicorn(env, workers=1) as base:
            yield base


def log_in(base, email):
    """Return an access token, logged in with a plain POST (for a client with no call but for resources)."""
    response = requests.post(f"{base}/v1/auth/login", json={"email": email, "password": PASSWORD}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["meta"]["access_token"]


@pytest.mark.parametrize("script", ["kitsu.mjs", "devour.mjs"])
def test_an_npm_client(service, script):
    if (shutil.which("node") is None or not (CLIENTS / "node_modules").exists()) and not os.environ.get("CI"):
        pytest.skip("needs Node and `npm ci` in tests/clients")
    email = f"{script.partition('.')[0]}@example.com"
    result = subprocess.run(["node", script, service, email, PASSWORD], cwd=CLIENTS, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_jsonapi_requests(service, secrets_seen):
    """jsonapi-requests 0.8.0 (its ORM), with its defaults: it appends a slash to every URL, which
    Latchkey serves as the same resource."""
    email = "jsonapi-requests@example.com"
    anonymous = orm.OrmApi.config({"API_ROOT": f"{service}/v1"})
    signed_up = anonymous.endpoint("users").post(
        object=data.JsonApiObject(type="users", attributes={"email": email, "password": PASSWORD}))
    assert signed_up.status_code == 201
    token = anonymous.endpoint("auth/login").post(json={"email": email, "password": PASSWORD}).content.meta[
        "access_token"]

    def bearer(request):
        request.headers["Authorization"] = f"Bearer {token}"
        return request

    keys_api = orm.OrmApi.config({"API_ROOT": f"{service}/v1", "AUTH": bearer})

    class User(orm.ApiModel):  # what an included owner becomes
        class Meta:
            type = "users"
            api = keys_api

        email = orm.AttributeField("email")

    class ApiKey(orm.ApiModel):
        class Meta:
            type = "api-keys"
            api = keys_api

        name = orm.AttributeField("name")
        secret = orm.AttributeField("secret")
        status = orm.AttributeField("status")
        user = orm.RelationField("user")

    assert ApiKey.get_list() == []
    keys = []
    for name in ("first", "second", "third"):
        key = ApiKey()
        key.name = name
        key.save()
        keys.append(key)
    first = keys[0]
    secrets_seen.add(PASSWORD, *(key.secret for key in keys))  # that the client logs none (conftest)
    assert first.secret.startswith("lk_")

    fetched = ApiKey.from_id(first.id)
    assert fetched.name == "first" and "secret" not in fetched.attributes
    fetched.name = "renamed"
    fetched.save()  # a PATCH of every attribute it read, the read-only ones too
    assert ApiKey.from_id(first.id).name == "renamed"

    page = keys_api.endpoint("api-keys").get(params={"page[size]": 2}).content
    assert len(page.data) == 2
    # Its bug: it appends the slash after a link's query string too ("...page[number]=2/", a 400), so
    # a link with a query is followed with the query as params (README, client section).
    link, _, query = page.links["next"].partition("?")
    following = keys_api.endpoint(link).get(params=parse_qsl(query)).content
    assert [key.attributes["name"] for key in following.data] == ["third"]
    assert [key.id for key in ApiKey.get_list(params={"filter[name]": "renamed"})] == [first.id]
    assert [key.name for key in ApiKey.get_list(params={"sort": "-name"})] == ["third", "second", "renamed"]
    [included] = ApiKey.get_list(params={"include": "user", "filter[name]": "renamed"})
    assert included.user.email == email
    assert keys_api.endpoint(included.links["self"]).get().data.id == first.id

    revoked = keys_api.endpoint(f"api-keys/{first.id}/revoke").post().data
    assert revoked.attributes["status"] == "revoked"
    fetched.delete()
    assert not ApiKey.exists(first.id)


def test_jsonapi_client(service, secrets_seen, caplog):
    """jsonapi-client 0.9.10: its Session, with the Authorization header in request_kwargs and SCHEMA.
    It logs every request body at DEBUG, the sign-up password included (its own doing, in the
    README's client table): its loggers are kept at INFO here, so the test's secret guard watches
    what Latchkey's code logs."""
    caplog.set_level(logging.INFO, logger="jsonapi_client")
    email = "jsonapi-client@example.com"
    Session(f"{service}/v1", schema=SCHEMA).create("users", email=email, password=PASSWORD).commit()
    auth = {"Authorization": f"Bearer {log_in(service, email)}"}

    def session():
        return Session(f"{service}/v1", schema=SCHEMA, request_kwargs={"headers": auth})

    api = session()
    assert api.get("api-keys").resources == []
    keys = []
    for name in ("first", "second", "third"):
        key = api.create("api-keys", name=name)
        key.commit()
        keys.append(key)
    first = keys[0]
    secrets_seen.add(PASSWORD, *(key.secret for key in keys))  # that the client logs none (conftest)
    assert first.secret.startswith("lk_")

    fetched = session().get("api-keys", first.id).resource  # a session answers what it holds: a new one
    assert fetched.name == "first" and fetched.secret is None  # the schema's default for an absent one
    fetched.name = "renamed"
    fetched.commit()  # a PATCH of what changed
    assert session().get("api-keys", first.id).resource.name == "renamed"

    page = api.get("api-keys", Modifier("page[size]=2"))
    assert len(page.resources) == 2
    assert [key.name for key in page.links.next.fetch().resources] == ["third"]
    assert len(list(api.iterate("api-keys", Modifier("page[size]=2")))) == 3
    assert [key.id for key in api.get("api-keys", Filter(name="renamed")).resources] == [first.id]
    assert [key.name for key in api.get("api-keys", Modifier("sort=-name")).resources] == [
        "third", "second", "renamed"]
    included = api.get("api-keys", Inclusion("user") + Filter(name="renamed")).resource
    assert included.user.email == email
    assert included.links.self.fetch().resource.id == first.id
    [owner] = included.relationships.user.fetch()
    assert owner.email == email

    # No call of its own for an action: the revocation is a plain POST.
    revoked = requests.post(f"{service}/v1/api-keys/{first.id}/revoke", headers=auth, timeout=10)
    assert revoked.json()["data"]["attributes"]["status"] == "revoked"
    fetched.delete()
    fetched.commit()
    assert requests.get(f"{service}/v1/api-keys/{first.id}", headers=auth, timeout=10).status_code == 404
