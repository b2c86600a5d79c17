"""Migrations: upgrade -> downgrade -> upgrade round trip on a fresh database, models match them,
and the operator's `python manage.py db upgrade` works on a fresh machine.

Every test here gets its own database (a SQLite file, or a PostgreSQL database created for it when
DATABASE_URL points at PostgreSQL); the suite's own tables are never touched.
"""
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy.engine import make_url

from app import (
    create_app,
    models,  # noqa: F401  (registers every table in db.metadata)
)
from app.extensions import db
from config import TestingConfig

ROOT = Path(__file__).resolve().parent.parent
MODEL_TABLES = set(db.metadata.tables)  # every table a model declares


def _postgres_url():
    """Return DATABASE_URL as a psycopg 3 URL if it names a PostgreSQL database, else None."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql")):
        return None
    return make_url(url).set(drivername="postgresql+psycopg")


@pytest.fixture
def fresh_database_url(tmp_path):
    """Yield the URL of an empty database that exists only for this test."""
    server = _postgres_url()
    if server is None:
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    name = f"latchkey_mig_{uuid.uuid4().hex[:12]}"
    maintenance = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with maintenance.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with maintenance.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        maintenance.dispose()


@pytest.fixture
def migration_app(fresh_database_url):
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=fresh_database_url, RATELIMIT_STORAGE_URI="memory://")
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def tables():
    """Return the tables in the current app's database, except Alembic's own."""
    return set(sa.inspect(db.engine).get_table_names()) - {"alembic_version"}


def alembic_revision():
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def schema_differences():
    """Return what autogenerate would put into a new migration: [] when models match migrations."""
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def test_upgrade_downgrade_upgrade_round_trip(migration_app):
    assert tables() == set()

    upgrade()
    head = alembic_revision()
    assert head is not None
    assert tables() == MODEL_TABLES

    downgrade(revision="base")
    assert tables() == set()
    assert alembic_revision() is None

    upgrade()
    assert tables() == MODEL_TABLES
    assert alembic_revision() == head


def test_models_match_the_migrations(migration_app):
    upgrade()
    assert schema_differences() == []


def test_a_unique_email_index_is_created_by_the_migrations(migration_app):
    """The case-insensitive uniqueness of emails rests on this index (emails are stored lower-cased)."""
    upgrade()
    indexes = {index["name"]: index for index in sa.inspect(db.engine).get_indexes("users")}
    assert indexes["ix_users_email"]["column_names"] == ["email"]
    assert indexes["ix_users_email"]["unique"]


def test_manage_py_db_upgrade_on_a_fresh_sqlite_file(tmp_path):
    database = tmp_path / "fresh.db"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}", "RATELIMIT_STORAGE_URI": "memory://",
           # Set, so the development fallback does not write secrets into the repository's instance/.
           "SECRET_KEY": "manage-py-test-secret-0123456789abcdef",
           "JWT_SECRET_KEY": "manage-py-test-jwt-secret-0123456789abcdef"}
    env.pop("REDIS_URL", None)

    result = subprocess.run([sys.executable, "manage.py", "db", "upgrade"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    engine = sa.create_engine(f"sqlite:///{database}")
    try:
        inspector = sa.inspect(engine)
        assert MODEL_TABLES <= set(inspector.get_table_names())
        assert {column["name"] for column in inspector.get_columns("users")} >= {"id", "email", "password_hash",
                                                                                  "is_admin"}
    finally:
        engine.dispose()
