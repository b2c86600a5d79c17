"""Signing keys of verification tokens: Ed25519 key pairs, the private half encrypted at rest.

The newest key that is not retired signs (app/services/signing.py); a retired one stays published
in the JWKS until every token it may have signed has expired, and is then deleted.
"""
from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import UTCDateTime, utcnow


class SigningKey(db.Model):
    __tablename__ = "signing_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)  # RFC 7638 thumbprint
    public_key: Mapped[str] = mapped_column(String(64), nullable=False)  # the JWK's `x`: base64url, 32 bytes
    # A Fernet token (key derived from SECRET_KEY) of the 32 raw private bytes; never the bytes themselves.
    encrypted_private_key: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # a newer key signs since then

    __table_args__ = {"sqlite_autoincrement": True}  # ids never reused: the newest key has the highest
