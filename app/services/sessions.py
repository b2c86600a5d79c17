"""Login sessions: started by a login, ended by logout, "sign out everywhere" or a password change.

No HTTP and no commit here: the API calls these and commits with the audit event. Every request
with a JWT reads its session row (a primary-key lookup), so an ended session is refused on every
worker and host at once.
"""
import uuid

from flask import current_app
from sqlalchemy import update

from app.extensions import db
from app.models import LoginSession
from app.models.types import utcnow


def start(user_id: int) -> str:
    """Add a session for `user_id` and return its id, the tokens' `sid` claim."""
    sid = uuid.uuid4().hex
    expires_at = utcnow() + current_app.config["JWT_REFRESH_TOKEN_EXPIRES"]
    db.session.add(LoginSession(sid=sid, user_id=user_id, expires_at=expires_at))
    return sid


def is_live(sid, user_id: int) -> bool:
    """Return True if `sid` names a session of `user_id` that has not ended."""
    session = db.session.get(LoginSession, sid) if isinstance(sid, str) else None
    return session is not None and session.user_id == user_id and session.ended_at is None


def end(sid: str) -> bool:
    """End one session; return False if it had already ended."""
    return _end(LoginSession.sid == sid) > 0


def end_all(user_id: int, keep: str | None = None) -> int:
    """End every live session of `user_id` but `keep`; return how many ended."""
    condition = LoginSession.user_id == user_id
    if keep is not None:
        condition &= LoginSession.sid != keep
    return _end(condition)


def _end(condition) -> int:
    result = db.session.execute(
        update(LoginSession).where(condition, LoginSession.ended_at.is_(None)).values(ended_at=utcnow()))
    return result.rowcount  # type: ignore[attr-defined]  # an UPDATE's result is a CursorResult
