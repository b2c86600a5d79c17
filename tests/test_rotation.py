"""Rotation: a new secret once, and the old one valid exactly until the grace period ends."""
from datetime import datetime, timedelta

import pytest

from app.models import ApiKey
from app.models.types import utcnow
from app.services import verifier
from tests.helpers import KEY_RE, assert_error, call, key_header, register_secret

LIST = "/v1/api-keys"
SECOND = timedelta(seconds=1)


@pytest.fixture
def owner(make):
    return make.user()


@pytest.fixture
def owner_key(make, owner):
    return make.key(owner, scopes=["keys:read"])


@pytest.fixture
def rotate(client, make, owner, secrets_seen):
    """POST .../rotate as the owner; any new secret goes to the log guard."""
    def rotate(key, body=None):
        response = call(client, "POST", f"{LIST}/{key.id}/rotate", make.headers(owner), body)
        register_secret(response, secrets_seen)
        return response
    return rotate


def secret_of(response):
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["data"]["attributes"]["secret"]


def outcome(client, secret):
    """(status, error code or None) of a request authenticated with `secret`."""
    response = client.get(LIST, headers=key_header(secret))
    return response.status_code, (response.get_json().get("errors") or [{}])[0].get("code")


def test_rotation_returns_a_new_secret_once(client, owner_key, rotate):
    response = rotate(owner_key)
    new = secret_of(response)
    attributes = response.get_json()["data"]["attributes"]
    assert KEY_RE.match(new) and new != owner_key.secret
    assert (attributes["start"], attributes["last4"]) == (new[:9], new[-4:])
    detail = client.get(f"{LIST}/{owner_key.id}", headers=key_header(new))
    assert "secret" not in detail.get_json()["data"]["attributes"]


@pytest.mark.parametrize("body", [None, {"grace-period": 0}], ids=["no-body", "zero"])
def test_without_grace_the_old_secret_is_refused_at_once(client, make, owner_key, rotate, body):
    assert outcome(client, owner_key.secret) == (200, None)  # cached from here on
    new = secret_of(rotate(owner_key, body))
    assert outcome(client, owner_key.secret) == (401, "NOT_FOUND")
    assert outcome(client, new) == (200, None)
    assert make.row(ApiKey, owner_key.id)["previous_digest"] is None


@pytest.mark.parametrize("body", [{"grace-period": 60},
                                  {"data": {"type": "api-keys", "attributes": {"grace-period": 60}}}],
                         ids=["plain-json", "jsonapi-document"])
def test_with_grace_the_old_secret_works_until_it_ends(client, make, owner_key, rotate, monkeypatch, body):
    before = utcnow()
    response = rotate(owner_key, body)
    new = secret_of(response)
    ends = make.row(ApiKey, owner_key.id)["previous_valid_until"]
    assert before + 60 * SECOND <= ends <= utcnow() + 60 * SECOND
    assert datetime.fromisoformat(response.get_json()["data"]["attributes"]["rotation-grace-until"]) == ends

    def at(moment):
        monkeypatch.setattr(verifier, "utcnow", lambda: moment)

    at(ends - SECOND)
    assert outcome(client, owner_key.secret) == (200, None)
    for moment in (ends, ends + SECOND):
        at(moment)
        assert outcome(client, owner_key.secret) == (401, "NOT_FOUND")
        assert outcome(client, new) == (200, None)


def test_revoking_ends_the_grace(client, make, owner, owner_key, rotate):
    new = secret_of(rotate(owner_key, {"grace-period": 600}))
    assert call(client, "POST", f"{LIST}/{owner_key.id}/revoke", make.headers(owner)).status_code == 200
    assert outcome(client, owner_key.secret)[0] == 401
    assert outcome(client, new) == (401, "REVOKED")


@pytest.mark.parametrize("config_overrides", [{"API_KEY_MAX_GRACE_SECONDS": 60}])
@pytest.mark.parametrize("grace", [61, -1, "30", True, 1.5, None])
def test_bad_grace_periods_are_422(make, owner_key, rotate, grace):
    before = make.row(ApiKey, owner_key.id)
    assert_error(rotate(owner_key, {"grace-period": grace}), 422, pointer="/data/attributes/grace-period")
    assert make.row(ApiKey, owner_key.id) == before


@pytest.mark.parametrize("config_overrides", [{"API_KEY_MAX_GRACE_SECONDS": 60}])
def test_the_maximum_grace_is_allowed(owner_key, rotate):
    secret_of(rotate(owner_key, {"grace-period": 60}))


@pytest.mark.parametrize("state", [{"status": "revoked"}, {"expires_at": utcnow() - SECOND}],
                         ids=["revoked", "expired"])
def test_revoked_or_expired_keys_cannot_be_rotated(make, owner, rotate, state):
    key = make.key(owner, **state)
    before = make.row(ApiKey, key.id)
    assert_error(rotate(key, {"grace-period": 60}), 409, code="INVALID_KEY_STATE")
    assert make.row(ApiKey, key.id) == before
