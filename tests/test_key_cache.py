"""The per-worker key cache: what invalidates it (key and account changes, in commit order) and
what does not (anyone's login attempts), and the brief memory of unknown keys (issue 10, items 1, 7).

In-process here; tests/test_processes.py has the four-worker, out-of-order-commit version."""
import os

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from app.extensions import db
from app.models import ApiKey
from app.services import changes
from app.services.breaker import DatabaseTimeout
from app.services.key_cache import PreparedLookup, key_cache
from app.services.key_format import generate_key, hash_secret
from tests.helpers import assert_error, call, key_header, register_secret, resource


@pytest.fixture
def config_overrides():
    return {"KEY_CACHE_SECONDS": 0}  # catch up with the change log before every lookup


def cached_ids(app):
    with app.app_context():
        return {record.id for record in key_cache()._entries.values()}


def lookups(app, monkeypatch):
    """Count the database lookups of keys made from here on."""
    from app.services import key_cache as module

    calls = []
    real = module._load
    monkeypatch.setattr(module, "_load", lambda digest: calls.append(digest) or real(digest))
    return calls


def test_item_1_a_failed_login_does_not_empty_the_cache(app, client, make, monkeypatch):
    owner = make.user()
    key = make.key(owner)
    assert client.get("/v1/api-keys", headers=key_header(key.secret)).status_code == 200
    loads = lookups(app, monkeypatch)
    for _ in range(3):  # anyone on the internet, failing to log in
        client.post("/v1/auth/login", json={"email": owner.email, "password": "not the password"})
        assert client.get("/v1/api-keys", headers=key_header(key.secret)).status_code == 200
    assert loads == []


def test_item_1_a_change_drops_only_the_records_it_names(app, client, make, monkeypatch):
    owner, other = make.user(), make.user()
    kept, changed = make.key(owner), make.key(owner)
    bystander = make.key(other)
    for key in (kept, changed, bystander):
        assert client.get("/v1/api-keys", headers=key_header(key.secret)).status_code == 200
    response = call(client, "PATCH", f"/v1/api-keys/{changed.id}", make.headers(owner),
                    resource("api-keys", {"scopes": []}, id_=changed.id))
    assert response.status_code == 200
    assert cached_ids(app) == {kept.id, bystander.id}
    assert_error(client.get("/v1/api-keys", headers=key_header(changed.secret)), 403, code="INSUFFICIENT_SCOPES")


def test_item_1_an_account_change_drops_every_key_of_the_account(app, client, make):
    owner, admin = make.user(admin=True), make.user(admin=True)
    first, second = make.key(owner, scopes=["keys:read", "admin:access"]), make.key(owner)
    for key in (first, second):
        assert client.get("/v1/api-keys", headers=key_header(key.secret)).status_code == 200
    demoted = call(client, "PATCH", f"/v1/users/{owner.id}", make.headers(admin),
                   resource("users", {"is-admin": False}, id_=owner.id))
    assert demoted.status_code == 200
    assert cached_ids(app) == set()


def test_item_1_a_change_made_elsewhere_reaches_this_worker(app, client, make):
    """A change committed by another process (here: straight through the models) is applied."""
    owner = make.user()
    key = make.key(owner)
    assert client.get("/v1/api-keys", headers=key_header(key.secret)).status_code == 200
    with app.app_context():
        db.session.get(ApiKey, key.id).status = "suspended"
        changes.announce(key_id=key.id)
        db.session.commit()
    assert_error(client.get("/v1/api-keys", headers=key_header(key.secret)), 401, code="SUSPENDED")


def test_item_1_change_numbers_follow_commits_and_the_log_is_bounded(app, make, monkeypatch):
    monkeypatch.setattr(changes, "KEEP", 3)
    owner = make.user()
    with app.app_context():
        for _ in range(5):
            changes.announce(user_id=owner.id)
            changes.announce(user_id=owner.id)
            db.session.commit()
        seqs = [row.seq for row in db.session.query(changes.KeyChange).order_by(changes.KeyChange.seq)]
    assert seqs == [8, 9, 10]


def test_item_1_a_rolled_back_change_is_not_announced(app, make):
    owner = make.user()
    with app.app_context():
        changes.announce(user_id=owner.id)
        db.session.rollback()
        db.session.commit()
        assert db.session.query(changes.KeyChange).count() == 0


@pytest.mark.parametrize("config_overrides", [{"KEY_CACHE_SECONDS": 60}])
def test_item_7_an_unknown_key_costs_one_lookup_and_a_new_key_works_at_once(app, client, make, monkeypatch,
                                                                           secrets_seen):
    owner = make.user()
    stranger = secrets_seen.add(generate_key("lk").secret)
    loads = lookups(app, monkeypatch)
    for _ in range(5):
        assert_error(client.get("/v1/api-keys", headers=key_header(stranger)), 401, code="NOT_FOUND")
    assert loads == [hash_secret(stranger)]
    created = call(client, "POST", "/v1/api-keys", make.headers(owner),
                   resource("api-keys", {"name": "new", "scopes": ["keys:read"]}))
    secret = register_secret(created, secrets_seen)
    assert client.get("/v1/api-keys", headers=key_header(secret)).status_code == 200


@pytest.mark.parametrize("config_overrides", [{"KEY_CACHE_SECONDS": 60}])
def test_item_7_a_key_made_elsewhere_is_found_once_the_unknown_digest_is_forgotten(app, client, make, timeline):
    """A key made by another worker: its digest, remembered as unknown here, is forgotten after
    KEY_CACHE_SECONDS (the clock is moved instead of waiting)."""
    owner = make.user()
    key = make.key(owner)
    probe = key.secret
    with app.app_context():  # as if this worker had seen the secret before the key existed
        key_cache()._unknown[hash_secret(probe)] = timeline()
    assert_error(client.get("/v1/api-keys", headers=key_header(probe)), 401, code="NOT_FOUND")
    timeline.advance(59.5)
    assert_error(client.get("/v1/api-keys", headers=key_header(probe)), 401, code="NOT_FOUND")
    timeline.advance(0.5)
    assert client.get("/v1/api-keys", headers=key_header(probe)).status_code == 200


def test_the_cache_is_bounded_and_evicts_its_oldest_entries_one_at_a_time(app, client, make, monkeypatch):
    """More distinct keys than the bound: the cache holds the newest CACHE_MAX_ENTRIES records (the
    oldest go first, one per miss, never the whole cache), and every key still authenticates."""
    from app.services import key_cache as module

    monkeypatch.setattr(module, "CACHE_MAX_ENTRIES", 3)
    owner = make.user()
    keys = [make.key(owner) for _ in range(5)]
    loaded = lookups(app, monkeypatch)
    for key in keys:
        assert client.get("/v1/api-keys", headers=key_header(key.secret)).status_code == 200
    assert cached_ids(app) == {key.id for key in keys[2:]}
    assert client.get("/v1/api-keys", headers=key_header(keys[4].secret)).status_code == 200  # still held
    assert client.get("/v1/api-keys", headers=key_header(keys[0].secret)).status_code == 200  # evicted: looked up
    assert len(loaded) == 6 and cached_ids(app) == {keys[3].id, keys[4].id, keys[0].id}
    for _ in range(4):  # unknown digests are bounded the same way
        assert_error(client.get("/v1/api-keys", headers=key_header(generate_key("lk").secret)), 401)
    with app.app_context():
        assert len(key_cache()._unknown) == 3


needs_postgres = pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"),
                                    reason="the prepared lookup is PostgreSQL's")


@needs_postgres
def test_the_prepared_lookup_reads_what_sqlalchemy_reads(app, make):
    """Every field of a KeyRecord, by the current secret and by the one a rotation replaced (in its
    grace), is the same through the prepared statement as through SQLAlchemy."""
    from datetime import timedelta

    from app.models.types import utcnow
    from app.services import lifecycle
    from app.services.key_cache import KeyRecord, PreparedLookup, _core_lookup

    key = make.key(make.user(), scopes=("keys:read", "llm:*"), expires_at=utcnow() + timedelta(days=3),
                   allowed_ips=["203.0.113.0/24", "2001:db8::1"], key_metadata={"team": "ml", "n": 2},
                   rate_limit="5/minute;100/hour", quota_limit=10, quota_period="day", budget_limit=1000,
                   budget_period="month")
    with app.app_context():
        row = db.session.get(ApiKey, key.id)
        new_secret = lifecycle.rotate(row, 3600, "lk")
        db.session.commit()
        lookup = PreparedLookup(db.engine)
        for secret in (key.secret, new_secret):
            digest = hash_secret(secret)
            ours, theirs = lookup(digest), _core_lookup(digest)
            records = [KeyRecord.from_row(r, matched_previous=r.digest != digest) for r in (ours, theirs)]
            assert records[0] == records[1] and records[0].expires_at.tzinfo is not None
            assert (records[0].grace_until is not None) == (secret == key.secret)
        assert lookup(hash_secret(generate_key("lk").secret)) is None
        lookup.close()


@needs_postgres
def test_a_lookup_connection_found_dead_is_replaced_and_the_lookup_made_once_more(app, make):
    """The lookup keeps its connection between requests; one that died while idle (a restarted
    server, an idle timeout) is closed and the lookup is made on a new one."""
    key = make.key(make.user())
    with app.app_context():
        lookup = PreparedLookup(db.engine)
        assert lookup(hash_secret(key.secret)).id == key.id
        dead = lookup._local.held[1]
        with db.engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": dead.info.backend_pid})
        assert lookup(hash_secret(key.secret)).id == key.id
        assert dead.closed and lookup._local.held[1] is not dead
        lookup.close()


@needs_postgres
def test_a_hung_database_is_not_asked_twice(app, make, monkeypatch):
    """A lookup that met the deadline (breaker.DeadlineConnection) fails at once, as SQLAlchemy's
    OperationalError (a 503 like every database failure): a retry would double the wait. A new
    connection that fails too ends the lookup the same way."""
    key = make.key(make.user())
    with app.app_context():
        lookup = PreparedLookup(db.engine)
        lookup(hash_secret(key.secret))
        calls = []

        def hung(*args, **kwargs):
            calls.append(args)
            raise DatabaseTimeout("no answer")

        monkeypatch.setattr(type(lookup._local.held[1]), "wait", hung)
        with pytest.raises(OperationalError) as raised:
            lookup(hash_secret(key.secret))
        assert isinstance(raised.value.orig, DatabaseTimeout) and len(calls) == 1
        monkeypatch.setattr(type(lookup._local.held[1]), "wait",
                            lambda *args, **kwargs: calls.append(args) or (_ for _ in ()).throw(
                                psycopg.OperationalError("server closed the connection")))
        with pytest.raises(OperationalError):
            lookup(hash_secret(key.secret))
        assert len(calls) == 3  # the failed one, then once more on a new connection
        monkeypatch.undo()
        lookup.close()


@needs_postgres
def test_lookup_connections_are_per_process_and_close_with_the_engine(app, make, monkeypatch):
    """A forked worker makes its own connection and leaves its parent's alone; the engine's
    dispose() closes this process's."""
    from app.services import key_cache as module

    key = make.key(make.user())
    with app.app_context():
        lookup = PreparedLookup(db.engine)
        lookup(hash_secret(key.secret))
        parent = lookup._local.held[1]
        real_pid = os.getpid()
        monkeypatch.setattr(module.os, "getpid", lambda: real_pid + 1)  # as if forked
        lookup(hash_secret(key.secret))
        child = lookup._local.held[1]
        assert child is not parent
        db.engine.dispose()
        assert child.closed and not parent.closed
        monkeypatch.undo()
        lookup.close()
        assert parent.closed
