"""Operator commands: `keys create|list|revoke|rotate`, run through Flask's CLI runner."""
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import ApiKey
from app.models.types import utcnow
from tests.conftest import assert_error
from tests.test_api_keys import KEY_RE, call, create_key, dump_database, key_count, key_header, register_secret

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


# --- one rule per field: the CLI refuses exactly what the API refuses (app/services/key_rules.py) ----

MAX_DAYS, MAX_GRACE = 30, 60
DAY, MINUTE = timedelta(days=1), timedelta(minutes=1)
SHARED_RULES = [  # (field, value, accepted)
    ("name", "", False),
    ("name", " ", True),  # the API's rule: a name is taken as sent, never stripped
    ("name", "  ci  ", True),
    ("name", "x" * 100, True),
    ("name", "x" * 101, False),
    ("name", " " + "x" * 100, False),  # 100 once stripped: the CLI used to accept it
    ("scopes", ["keys"], False),
    ("scopes", ["Keys:Read"], False),
    ("scopes", ["keys:read", "llm:*"], True),
    ("scopes", [f"app:s{i}" for i in range(50)], True),
    ("scopes", [f"app:s{i}" for i in range(51)], False),  # the CLI used to accept any number
    ("lifetime", timedelta(0), False),
    ("lifetime", MINUTE, True),
    ("lifetime", MAX_DAYS * DAY, True),
    ("lifetime", MAX_DAYS * DAY + MINUTE, False),
    ("lifetime", (MAX_DAYS + 1) * DAY, False),
    ("grace", -1, False),
    ("grace", 0, True),
    ("grace", MAX_GRACE, True),
    ("grace", MAX_GRACE + 1, False),
]


POINTERS = {"name": "name", "scopes": "scopes", "lifetime": "expires-at", "grace": "grace-period"}
OPTIONS = {"name": "--name", "scopes": "--scope", "lifetime": "--expires-in", "grace": "--grace"}


def _api_door(client, make, secrets_seen, field, value):
    """None if the API accepts `value` for `field`, else its 422's detail."""
    owner = make.user()
    if field == "grace":
        response = call(client, "POST", f"{LIST}/{make.key(owner).id}/rotate", make.headers(owner),
                        {"grace-period": value})
        register_secret(response, secrets_seen)
    else:
        sent = (utcnow() + value).isoformat() if field == "lifetime" else value
        response = create_key(client, make.headers(owner), secrets_seen, **{POINTERS[field]: sent})
    if response.status_code in (200, 201):
        return None
    return assert_error(response, 422, pointer=f"/data/attributes/{POINTERS[field]}")["detail"]


def _cli_door(make, keys, field, value):
    """None if the CLI accepts `value` for `field`, else the reason it gives for its option."""
    owner = make.user()
    if field == "grace":
        result = keys("rotate", make.key(owner).id, "--grace", value)
    elif field == "name":
        result = keys("create", "--user", owner.email, "--name", value)
    elif field == "scopes":
        result = keys("create", "--user", owner.email, "--name", "ci", *(arg for scope in value
                                                                          for arg in ("--scope", scope)))
    else:
        result = keys("create", "--user", owner.email, "--name", "ci",
                      "--expires-in", f"{int(value.total_seconds())}s")
    if result.exit_code == 0:
        return None
    reason = re.search(rf"Error: Invalid value for '?{OPTIONS[field]}'?: (.+)", result.output)
    assert reason, result.output
    return reason.group(1)


@pytest.mark.parametrize("config_overrides", [{"API_KEY_MAX_LIFETIME_DAYS": MAX_DAYS,
                                               "API_KEY_MAX_GRACE_SECONDS": MAX_GRACE}])
@pytest.mark.parametrize("field, value, accepted", SHARED_RULES,
                         ids=[f"{field}-{i}" for i, (field, _, _) in enumerate(SHARED_RULES)])
def test_the_cli_and_the_api_share_each_rule(client, make, keys, secrets_seen, field, value, accepted):
    api = _api_door(client, make, secrets_seen, field, value)
    cli = _cli_door(make, keys, field, value)
    assert (api is None, cli is None) == (accepted, accepted), (api, cli)
    if not accepted:  # the same words; the API puts its attribute's name first ("expires-at must ...")
        assert api.endswith(cli), (api, cli)
