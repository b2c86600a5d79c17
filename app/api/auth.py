"""Sessions: login, refresh and logout. Access and refresh tokens share a session id (`sid`),
and logout revokes that session, so both tokens stop working, on every worker and after a
restart (the revocation is a database row)."""
import uuid

from flask import current_app, jsonify, request
from flask_jwt_extended import create_access_token, create_refresh_token

from app.api import bp
from app.api.helpers.audit import audit
from app.api.helpers.auth import Actor, decode_session_token, require, unauthorized
from app.api.helpers.errors import ApiError
from app.api.helpers.ratelimit import client_ip
from app.api.helpers.requests import json_body
from app.extensions import db, limiter
from app.models import RevokedSession, User
from app.models.types import utcnow
from app.services.passwords import verify_password


def _login_email() -> str:
    body = request.get_json(silent=True)
    attributes = (body or {}).get("data", {}).get("attributes", body) if isinstance(body, dict) else {}
    email = attributes.get("email") if isinstance(attributes, dict) else None
    return f"login-email:{str(email).strip().lower()[:254]}"


def _session_document(user_id: int, sid: str, with_refresh: bool):
    identity = str(user_id)
    meta = {
        "access_token": create_access_token(identity, additional_claims={"sid": sid}),
        "token_type": "Bearer",
        "expires_in": int(current_app.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds()),
        "user_id": identity,
    }
    if with_refresh:
        meta["refresh_token"] = create_refresh_token(identity, additional_claims={"sid": sid})
    response = jsonify(meta=meta, jsonapi={"version": "1.0"})
    response.headers["Content-Type"] = "application/vnd.api+json"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/auth/login")
def login():
    """Return access and refresh tokens; the same 401 for a wrong password and an unknown email.

    Stricter limits than the defaults apply, per client IP and per email, against brute force.
    """
    login_limit = current_app.config["RATE_LIMIT_LOGIN"]
    with limiter.limit(login_limit, key_func=lambda: f"login-ip:{client_ip()}", scope="login-ip"), \
            limiter.limit(login_limit, key_func=_login_email, scope="login-email"):
        return _login()


def _login():
    body = json_body()
    email, password = body.get("email"), body.get("password")
    if not isinstance(email, str) or not isinstance(password, str):
        raise ApiError(422, "Validation error", "email and password are required strings.",
                       pointer="/data/attributes")
    user = db.session.scalar(db.select(User).where(User.email == email.strip().lower()))
    if not verify_password(user.password_hash if user else None, password) or user is None:
        user_id = user.id if user else None
        audit("auth.login_failed", "user", user_id, user_id)
        db.session.commit()
        raise unauthorized("Wrong email or password.", "INVALID_CREDENTIALS")
    audit("auth.login", "user", user.id, user.id, actor=Actor(user.id, user.is_admin))
    db.session.commit()
    return _session_document(user.id, uuid.uuid4().hex, with_refresh=True)


@bp.post("/auth/refresh")
def refresh():
    """Return a new access token for the refresh token in the Authorization header."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("Send the refresh token as 'Authorization: Bearer <token>'.", "UNAUTHENTICATED")
    claims, user = decode_session_token(token.strip(), "refresh")
    return _session_document(user.id, claims["sid"], with_refresh=False)


@bp.post("/auth/logout")
def logout():
    """Revoke the caller's session: its access and refresh tokens both stop working."""
    actor = require()
    if actor.session_id is None:
        raise ApiError(400, "Bad request", "Logout ends a JWT session; API keys are revoked instead.")
    expires = utcnow() + current_app.config["JWT_REFRESH_TOKEN_EXPIRES"]
    if db.session.get(RevokedSession, actor.session_id) is None:
        db.session.add(RevokedSession(sid=actor.session_id, user_id=actor.user_id, expires_at=expires))
        audit("auth.logout", "user", actor.user_id, actor.user_id)
        db.session.commit()
    return "", 204
