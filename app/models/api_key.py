"""API keys: only a digest of the secret is stored."""
from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Text, or_
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.types import UTCDateTime, utcnow

ACTIVE, SUSPENDED, REVOKED, EXPIRED = "active", "suspended", "revoked", "expired"


def status_at(status: str, expires_at, now) -> str:
    """The status a key has at `now`: the stored one, or `expired` for an active key past its
    expiry. Decided here only (ApiKey, the hot path's KeyRecord); ApiKey.status_clause is its SQL."""
    if status == ACTIVE and expires_at is not None and expires_at <= now:
        return EXPIRED
    return status


class ApiKey(db.Model):
    __tablename__ = "api_keys"
    # Never reuse the id of a deleted row on SQLite: an old token or key must not find a new owner.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True, nullable=False
    )
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    # SHA-256 hex digest of the whole key string; the key itself is never stored.
    digest: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    start: Mapped[str] = mapped_column(String(24), nullable=False)
    last4: Mapped[str] = mapped_column(String(4), nullable=False)
    scopes = mapped_column(JSON, nullable=False, default=list)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=ACTIVE, index=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at = mapped_column(UTCDateTime)
    suspended_at = mapped_column(UTCDateTime)
    last_used_at = mapped_column(UTCDateTime)
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False)
    allowed_ips: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    key_metadata = mapped_column("metadata", JSON, nullable=False, default=dict)
    tags = mapped_column(JSON, nullable=False, default=list)
    # flask-limiter notation, e.g. "100/minute;10000/day"; None means only the defaults apply.
    rate_limit: Mapped[str | None] = mapped_column(String(200))
    quota_limit: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    quota_period: Mapped[str | None] = mapped_column(String(8))
    budget_limit: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    budget_period: Mapped[str | None] = mapped_column(String(8))
    # Rotation: the replaced secret stays valid until previous_valid_until.
    previous_digest: Mapped[str | None] = mapped_column(String(64), unique=True)
    previous_valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Bumped on every change that matters to authentication, so worker caches can notice it.
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    user = relationship("User", back_populates="api_keys")

    # The secret of a key just created or rotated: set in memory for the one response that shows
    # it, never persisted (it is not a column).
    plaintext_secret = None

    __mapper_args__ = {"version_id_col": version}

    def effective_status(self, now=None) -> str:
        return status_at(self.status, self.expires_at, now or utcnow())

    @classmethod
    def status_clause(cls, status: str, now):
        """SQL: the keys whose status at `now` is `status` (the form of status_at in a query)."""
        if status == EXPIRED:
            return (cls.status == ACTIVE) & (cls.expires_at <= now)
        if status == ACTIVE:
            return (cls.status == ACTIVE) & or_(cls.expires_at.is_(None), cls.expires_at > now)
        return cls.status == status

    def __repr__(self):
        return f"<ApiKey {self.id} {self.start}...>"
