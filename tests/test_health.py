"""Liveness and readiness probes: /healthz answers while the process runs; /readyz says whether the
database and the rate limit storage answer, and names what failed (never how to reach it)."""
import pytest

from app import create_app
from app.extensions import db
from config import TestingConfig

UNREACHABLE_POSTGRES = "postgresql+psycopg://postgres:hunter2@127.0.0.1:1/nope"  # a closed port
UNREACHABLE_REDIS = "redis://:hunter2@127.0.0.1:1"


def test_healthz_answers_ok(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_is_ready_when_every_dependency_answers(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "checks": {"database": True, "rate_limit_storage": True}}


OUTAGES = {
    "PostgreSQL unreachable": (lambda tmp_path: {"SQLALCHEMY_DATABASE_URI": UNREACHABLE_POSTGRES},
                               "database"),
    "SQLite file in a missing folder": (
        lambda tmp_path: {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'missing' / 'latchkey.db'}"}, "database"),
    "rate limit storage unreachable": (lambda tmp_path: {"RATELIMIT_STORAGE_URI": UNREACHABLE_REDIS},
                                       "rate_limit_storage"),
}


@pytest.fixture(params=OUTAGES.values(), ids=OUTAGES.keys())
def outage(request, database_url, storage_uri, tmp_path):
    """Yield (an app with one unreachable dependency, the name of its readiness check)."""
    overrides, failing_check = request.param
    settings = {"SQLALCHEMY_DATABASE_URI": database_url, "RATELIMIT_STORAGE_URI": storage_uri, **overrides(tmp_path)}
    app = create_app(TestingConfig, **settings)
    yield app, failing_check
    with app.app_context():
        db.engine.dispose()


def test_readyz_names_the_unreachable_dependency(outage):
    app, failing_check = outage

    response = app.test_client().get("/readyz")

    assert response.status_code == 503
    document = response.get_json()
    assert document["status"] == "unavailable"
    assert {name for name, ok in document["checks"].items() if not ok} == {failing_check}
    body = response.get_data(as_text=True)
    assert "hunter2" not in body and "127.0.0.1" not in body


def test_healthz_stays_ok_while_a_dependency_is_down(outage):
    app, _ = outage

    assert app.test_client().get("/healthz").status_code == 200
