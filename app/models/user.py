"""Accounts and revoked login sessions."""
from sqlalchemy import Boolean, ForeignKey, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.types import UTCDateTime, utcnow


class User(db.Model):
    __tablename__ = "users"
    # Never reuse the id of a deleted row on SQLite: an old token or key must not find a new owner.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Stored lower-cased, so the unique index makes emails unique regardless of case.
    email: Mapped[str] = mapped_column(String(254), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False)

    api_keys = relationship(
        "ApiKey", back_populates="user", cascade="all, delete-orphan", passive_deletes=True,
        lazy="select",
    )

    def __repr__(self):
        return f"<User {self.id}>"


class LoginSession(db.Model):
    """A login: its access and refresh tokens carry its id (the `sid` claim).

    Tokens are accepted only while their session is here and not ended. Logout ends one session;
    "sign out everywhere" and a password change end all of a user's sessions (but the one that
    changed its own password). A deleted account takes its sessions with it.
    """

    __tablename__ = "login_sessions"

    sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    # Past this instant every token of the session has expired anyway; rows can be pruned.
    expires_at = mapped_column(UTCDateTime, nullable=False, index=True)
    ended_at = mapped_column(UTCDateTime)
