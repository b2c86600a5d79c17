"""Unbound extension objects; `create_app` binds them to an application."""
import sqlite3

from flask import current_app
from flask_cors import CORS
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase
from werkzeug.local import LocalProxy


class Base(DeclarativeBase):
    # Named constraints, so that migrations (and SQLite's batch mode) can refer to them.
    metadata = MetaData(naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    })


db = SQLAlchemy(model_class=Base)


@event.listens_for(Engine, "connect")
def _sqlite_enforces_foreign_keys(dbapi_connection, connection_record):
    # SQLite ignores foreign keys (and so ON DELETE CASCADE) unless asked, per connection.
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
migrate = Migrate()
jwt = JWTManager()
cors = CORS()


def state(name: str):
    """Latchkey's per-app state `app.extensions[name]` of the current app, for the hot path: without
    LocalProxy's lookup per attribute, which costs six times the dict access itself."""
    return current_app._get_current_object().extensions[name]  # type: ignore[attr-defined]


# flask-limiter keeps several settings (defaults, storage error policy, key prefix) from the first
# app it is bound to, so each app gets its own Limiter (app/api/helpers/ratelimit.py builds it);
# this proxy reaches the current app's.
limiter: Limiter = LocalProxy(lambda: current_app.extensions["latchkey_limiter"])  # type: ignore[assignment]
