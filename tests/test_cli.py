"""Operator commands: `keys create|list|revoke|rotate`, run through Flask's CLI runner."""
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import ApiKey
from app.models.types import utcnow
from tests.test_api_keys import KEY_RE, dump_database, key_count, key_header

LIST = "/v1/api-keys"


@pytest.fixture
def keys(app, secrets_seen):
    """Run `keys <args>`; every secret printed goes to the log guard."""
    runner = app.test_cli_runner()

    def keys(*args):
        result = runner.invoke(args=["keys", *map(str, args)])
        secrets_seen.add(*[line for line in result.output.split() if KEY_RE.match(line)])
        return result
    return keys


def printed_secret(result):
    assert result.exit_code == 0, result.output
    secrets = [word for word in result.output.split() if KEY_RE.match(word)]
    assert len(secrets) == 1, result.output
    return secrets[0]


def only_key_of(app, user_id) -> dict:
    with app.app_context():
        key = db.session.scalars(select(ApiKey).where(ApiKey.user_id == user_id)).one()
        return {"id": key.id, "name": key.name, "scopes": key.scopes, "expires_at": key.expires_at}


def test_create_prints_a_working_secret_once(app, client, make, keys):
    owner = make.user()
    before = utcnow()
    result = keys("create", "--user", owner.email.upper(), "--name", "ci", "--scope", "keys:read",
                  "--scope", "llm:*", "--expires-in", "30d")
    secret = printed_secret(result)
    key = only_key_of(app, owner.id)
    assert (key["name"], key["scopes"]) == ("ci", ["keys:read", "llm:*"])
    assert before + timedelta(days=30) <= key["expires_at"] <= utcnow() + timedelta(days=30)
    assert client.get(LIST, headers=key_header(secret)).status_code == 200
    assert secret not in dump_database(app)


@pytest.mark.parametrize("args", [
    ("--user", "nobody@example.com", "--name", "ci"),
    ("--user", "{email}", "--name", "ci", "--scope", "keys"),
    ("--user", "{email}", "--name", "ci", "--scope", "Keys:Read"),
    ("--user", "{email}", "--name", "ci", "--expires-in", "30x"),
    ("--user", "{email}", "--name", "ci", "--expires-in", "-1d"),
    ("--user", "{email}"),
    ("--user", "{email}", "--name", ""),
    ("--user", "{email}", "--name", "x" * 101),
    ("--user", "{email}", "--name", "ci", "--expires-in", "1000d"),  # beyond API_KEY_MAX_LIFETIME_DAYS
])
def test_create_refuses_bad_input_and_writes_nothing(app, make, keys, args):
    owner = make.user()
    result = keys("create", *(arg.format(email=owner.email) for arg in args))
    assert result.exit_code != 0
    assert "Error" in result.output
    assert not any(KEY_RE.match(word) for word in result.output.split())
    assert key_count(app, owner.id) == 0


@pytest.mark.parametrize("config_overrides", [{"API_KEY_MAX_PER_USER": 1}])
def test_create_respects_the_maximum(app, make, keys):
    owner = make.user()
    make.key(owner)
    result = keys("create", "--user", owner.email, "--name", "ci")
    assert result.exit_code != 0 and "Error" in result.output
    assert key_count(app, owner.id) == 1


def test_list_never_shows_a_secret(app, make, keys):
    alice, bob = make.user(), make.user()
    shown = make.key(alice, name="deploy", scopes=["keys:read", "llm:*"])
    hidden = make.key(bob, name="bob's")
    digest = make.row(ApiKey, shown.id)["digest"]

    everything = keys("list")
    assert everything.exit_code == 0
    assert {line.split("\t")[0] for line in everything.output.splitlines()} == {str(shown.id), str(hidden.id)}
    line = next(line for line in everything.output.splitlines() if line.startswith(f"{shown.id}\t"))
    assert line.split("\t") == [str(shown.id), alice.email, "deploy", f"{shown.secret[:9]}...{shown.secret[-4:]}",
                                "active", "keys:read llm:*"]
    for output in (everything.output, keys("list", "--user", alice.email).output):
        assert shown.secret not in output and hidden.secret not in output and digest not in output
    assert [line.split("\t")[0] for line in keys("list", "--user", alice.email).output.splitlines()] == [str(shown.id)]


def test_revoke_is_final(client, make, keys):
    key = make.key(make.user())
    first = keys("revoke", key.id)
    assert first.exit_code == 0, first.output
    assert make.row(ApiKey, key.id)["status"] == "revoked"
    assert client.get(LIST, headers=key_header(key.secret)).status_code == 401
    before = make.row(ApiKey, key.id)
    second = keys("revoke", key.id)
    assert second.exit_code != 0 and "Error" in second.output
    assert make.row(ApiKey, key.id) == before


@pytest.mark.parametrize("command", ["revoke", "rotate"])
def test_unknown_key_fails(keys, command):
    result = keys(command, 987654)
    assert result.exit_code != 0 and "Error" in result.output


@pytest.mark.parametrize("grace, old_works", [(None, False), (0, False), (3600, True)])
def test_rotate_prints_the_new_secret_once(client, make, keys, grace, old_works):
    key = make.key(make.user())
    before = utcnow()
    new = printed_secret(keys("rotate", key.id, *(("--grace", grace) if grace is not None else ())))
    assert new != key.secret
    assert client.get(LIST, headers=key_header(new)).status_code == 200
    assert (client.get(LIST, headers=key_header(key.secret)).status_code == 200) == old_works
    ends = make.row(ApiKey, key.id)["previous_valid_until"]
    if old_works:
        assert before + timedelta(seconds=grace) <= ends <= utcnow() + timedelta(seconds=grace)
    else:
        assert ends is None


@pytest.mark.parametrize("config_overrides", [{"API_KEY_MAX_GRACE_SECONDS": 60}])
def test_rotate_never_grants_more_than_the_maximum_grace(make, keys):
    key = make.key(make.user())
    result = keys("rotate", key.id, "--grace", 3600)
    ends = make.row(ApiKey, key.id)["previous_valid_until"]
    if result.exit_code == 0:  # capped ...
        assert ends <= utcnow() + timedelta(seconds=60)
    else:  # ... or refused
        assert ends is None


def test_rotate_refuses_a_revoked_key(make, keys):
    key = make.key(make.user(), status="revoked")
    before = make.row(ApiKey, key.id)
    result = keys("rotate", key.id)
    assert result.exit_code != 0 and "Error" in result.output
    assert make.row(ApiKey, key.id) == before
