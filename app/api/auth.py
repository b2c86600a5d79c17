"""Sessions: login, refresh, logout and logout-all. Access and refresh tokens share a session id
(`sid`) naming a database row; ending the session (logout, logout-all, a password change) stops
both tokens on every worker at once, and after a restart. API keys obtain no session here.

A login body is a plain object or a `sessions` document (what a login starts); the answers of
login and refresh carry the tokens in `meta`, not as a resource a client would keep in its store,
and are never cached (no-store)."""
from flask import current_app, g, request
from flask_jwt_extended import create_access_token, create_refresh_token

from app.api import bp
from app.api.helpers.audit import ANONYMOUS, audit
from app.api.helpers.auth import Actor, decode_session_token, require, unauthorized
from app.api.helpers.documents import NO_STORE, check_type
from app.api.helpers.errors import ApiError
from app.api.helpers.jsonapi import respond
from app.api.helpers.permissions import require_session
from app.api.helpers.ratelimit import client_ip
from app.api.helpers.requests import json_body
from app.extensions import db, limiter
from app.models import User
from app.services import sessions
from app.services.passwords import verify_password


def _login_fields():
    """Return (email, password, error) of the login body, parsed once for the limiter's key function
    and the view alike; never raises (`error` is the 415/400 to answer, the fields None if absent)."""
    if "login_fields" not in g:
        try:
            attributes, error = json_body(), None
        except ApiError as raised:
            attributes, error = {}, raised
        g.login_fields = (attributes.get("email"), attributes.get("password"), error)
    return g.login_fields


def _login_email() -> str:
    email = _login_fields()[0]
    return f"login-email:{email.strip().lower()[:254] if isinstance(email, str) else ''}"


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
    return respond({"meta": meta}, headers=NO_STORE)


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
    email, password, error = _login_fields()
    if error is not None:
        raise error
    check_type("sessions")
    if not isinstance(email, str) or not isinstance(password, str) or "\x00" in email:
        raise ApiError(422, "Validation error", "email and password are required strings (without NUL).",
                       pointer="/data/attributes")
    user = db.session.scalar(db.select(User).where(User.email == email.strip().lower()))
    if not verify_password(user.password_hash if user else None, password) or user is None:
        # Whoever sent it (a token in the headers proves nothing here), the attempt is anonymous:
        # it is shown to the account's owner and admins, never in the sender's own trail.
        user_id = user.id if user else None
        audit("auth.login_failed", "user", user_id, user_id, actor=ANONYMOUS)
        db.session.commit()
        raise unauthorized("Wrong email or password.", "INVALID_CREDENTIALS")
    sid = sessions.start(user.id)
    audit("auth.login", "user", user.id, user.id, actor=Actor(user.id, user.is_admin, session_id=sid))
    db.session.commit()
    return _session_document(user.id, sid, with_refresh=True)


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
    """End the caller's session: its access and refresh tokens both stop working."""
    actor = require()
    if actor.session_id is None:
        raise ApiError(400, "Bad request", "Logout ends a JWT session; API keys are revoked instead.")
    if sessions.end(actor.session_id):
        audit("auth.logout", "user", actor.user_id, actor.user_id)
        db.session.commit()
    return "", 204


@bp.post("/auth/logout-all")
def logout_all():
    """Sign out everywhere: end every session of the caller's account, this one included."""
    actor = require()
    require_session(actor, "Signing out everywhere")
    sessions.end_all(actor.user_id)
    audit("auth.logout_all", "user", actor.user_id, actor.user_id)
    db.session.commit()
    return "", 204
