"""Liveness and readiness probes, outside /v1 and exempt from rate limits (see create_app)."""
from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from app.extensions import db, limiter

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Return 200 while the process serves requests."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Return 200 when the database and the limiter storage answer, else 503 naming what failed."""
    checks = {"database": _database_ok(), "rate_limit_storage": _limiter_storage_ok()}
    ready = all(checks.values())
    return jsonify(status="ready" if ready else "unavailable", checks=checks), 200 if ready else 503


def _database_ok() -> bool:
    try:
        db.session.execute(text("SELECT 1"))
        return True
    except Exception:
        db.session.rollback()
        current_app.logger.warning("readiness: database unreachable")
        return False


def _limiter_storage_ok() -> bool:
    try:
        return bool(limiter.storage.check())
    except Exception:
        current_app.logger.warning("readiness: rate limit storage unreachable")
        return False
