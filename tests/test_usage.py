"""Usage analytics: per-key time series by outcome, and the caller's summary."""
from datetime import UTC, datetime

import pytest

from tests.helpers import assert_error


@pytest.fixture
def config_overrides():
    return {"RATE_LIMIT_DEFAULTS": "100000 per hour"}


def use(client, key, count, **kwargs):
    for _ in range(count):
        client.get("/v1/api-keys", headers={"X-API-Key": key.secret}, **kwargs)


def test_a_keys_usage_counts_requests_by_outcome(client, make):
    owner = make.user()
    key = make.key(owner, scopes=["keys:read"], rate_limit="5/minute")
    client.post("/v1/api-keys", json={}, headers={"X-API-Key": key.secret})  # lacks keys:write
    use(client, key, 7)  # the key's 5/minute covers every endpoint: 4 admitted, 3 rate limited
    response = client.get(f"/v1/api-keys/{key.id}/usage", headers=make.headers(owner))
    assert response.status_code == 200
    attributes = response.get_json()["data"]["attributes"]
    assert attributes["totals"] == {"INSUFFICIENT_SCOPES": 1, "VALID": 4, "RATE_LIMITED": 3}
    assert attributes["granularity"] == "hour"
    point = attributes["series"][0]
    assert point["total"] == sum(attributes["totals"].values())


def test_usage_totals_equal_the_requests_fired(client, make):
    owner = make.user()
    key = make.key(owner, scopes=["keys:read"])
    use(client, key, 12)
    totals = client.get(f"/v1/api-keys/{key.id}/usage?group-by=day",
                        headers=make.headers(owner)).get_json()["data"]["attributes"]["totals"]
    assert totals == {"VALID": 12}


def test_a_revoked_key_is_counted_as_revoked(client, make):
    owner = make.user()
    key = make.key(owner, status="revoked")
    use(client, key, 3)
    totals = client.get(f"/v1/api-keys/{key.id}/usage", headers=make.headers(owner)).get_json()["data"]["attributes"]
    assert totals["totals"] == {"REVOKED": 3}


def test_summary_covers_the_callers_keys_only(client, make):
    ann, bob = make.user(), make.user()
    busy, quiet = make.key(ann, name="busy"), make.key(ann, name="quiet")
    use(client, busy, 4)
    use(client, quiet, 1)
    use(client, make.key(bob), 9)
    summary = client.get("/v1/usage", headers=make.headers(ann)).get_json()["data"]["attributes"]
    assert summary["total"] == 5 and summary["errors"] == 0 and summary["rate-limited"] == 0
    assert [key["name"] for key in summary["busiest-keys"]] == ["busy", "quiet"]
    admin_summary = client.get("/v1/usage", headers=make.headers(make.user(admin=True))).get_json()
    assert admin_summary["data"]["attributes"]["total"] == 14


@pytest.mark.parametrize("actor, status", [("owner", 200), ("other", 404), ("admin", 200), ("anonymous", 401),
                                           ("key-with-scope", 200), ("key-without-scope", 403)])
def test_who_may_read_a_keys_usage(client, make, actor, status):
    owner = make.user()
    key = make.key(owner)
    headers = {
        "owner": make.headers(owner), "other": make.headers(make.user()), "admin": make.headers(make.user(admin=True)),
        "anonymous": {}, "key-with-scope": {"X-API-Key": make.key(owner, scopes=["usage:read"]).secret},
        "key-without-scope": {"X-API-Key": make.key(owner, scopes=["keys:read"]).secret},
    }[actor]
    assert client.get(f"/v1/api-keys/{key.id}/usage", headers=headers).status_code == status


@pytest.mark.parametrize("query, parameter", [
    ("group-by=minute", "group-by"), ("filter[from]=yesterday", "filter[from]"),
    ("filter[from]=2026-01-01T00:00:00Z&filter[to]=2025-01-01T00:00:00Z", "filter[from]"),
    ("filter[from]=2020-01-01T00:00:00Z&filter[to]=2026-01-01T00:00:00Z&group-by=hour", "filter[from]"),
    ("filter[to]=2026-01-01&filter[to]=2026-01-02", "filter[to]"),
    ("granularity=minute", "granularity"), ("from=yesterday", "from"),           # the old names too
    ("from=2026-01-01T00:00:00Z&filter[to]=2025-01-01T00:00:00Z", "from"),
    ("from=2026-01-01&filter[from]=2026-01-01", "from"), ("group-by=day&granularity=day", "granularity"),
])
def test_bad_usage_parameters_are_400(client, make, query, parameter):
    owner = make.user()
    key = make.key(owner)
    for path in (f"/v1/api-keys/{key.id}/usage", "/v1/usage"):
        error = assert_error(client.get(f"{path}?{query}", headers=make.headers(owner)), 400)
        assert error["source"] == {"parameter": parameter}, error


# --- the window's parameters: JSON:API reserves all-lowercase names -----------------------------------

WINDOW = {"filter[from]": "2026-01-01T00:00:00+00:00", "filter[to]": "2026-01-03T00:00:00+00:00", "group-by": "day"}
OLD_NAMES = {"filter[from]": "from", "filter[to]": "to", "group-by": "granularity"}


@pytest.mark.parametrize("path", ["/v1/api-keys/{key}/usage", "/v1/usage"])
def test_the_window_is_filter_from_filter_to_and_group_by(client, make, path):
    owner = make.user()
    response = client.get(path.format(key=make.key(owner).id), headers=make.headers(owner), query_string=WINDOW)
    assert response.status_code == 200, response.get_data(as_text=True)
    attributes = response.get_json()["data"]["attributes"]
    assert (attributes["from"], attributes["to"]) == (WINDOW["filter[from]"], WINDOW["filter[to]"])
    assert "Deprecation" not in response.headers


@pytest.mark.parametrize("old", OLD_NAMES.values())
@pytest.mark.parametrize("path", ["/v1/api-keys/{key}/usage", "/v1/usage"])
def test_the_old_names_work_for_a_release_and_say_they_are_deprecated(client, make, path, old):
    owner = make.user()
    query = {(old if OLD_NAMES[name] == old else name): value for name, value in WINDOW.items()}  # one old name
    response = client.get(path.format(key=make.key(owner).id), headers=make.headers(owner), query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)
    attributes = response.get_json()["data"]["attributes"]
    assert (attributes["from"], attributes["to"]) == (WINDOW["filter[from]"], WINDOW["filter[to]"])
    deprecated_on = datetime(2026, 11, 23, tzinfo=UTC)
    assert response.headers["Deprecation"] == f"@{int(deprecated_on.timestamp())}"  # RFC 9745


@pytest.mark.parametrize("old", OLD_NAMES.values())
def test_the_old_names_are_refused_elsewhere(client, make, old):
    user = make.user()
    error = assert_error(client.get(f"/v1/api-keys?{old}=day", headers=make.headers(user)), 400)
    assert error["source"] == {"parameter": old}
