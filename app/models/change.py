"""The key change log: which keys and accounts changed, in commit order, for the workers' caches.

Every change that can matter to a cached key record (a key's or an account's mutation) adds a row
in the transaction that makes it (app/services/changes.py). Sequence numbers come from the single
row of `key_change_counter`, incremented last before the commit: the row lock it takes makes the
next writer wait until this one has committed, so numbers are handed out in commit order on
PostgreSQL too (a plain sequence is not: an id taken first may commit last). A worker that has
read every change up to N has therefore seen every change committed before N + 1.
"""
from sqlalchemy import BigInteger, Integer
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import UTCDateTime, utcnow


class KeyChange(db.Model):
    __tablename__ = "key_changes"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                     autoincrement=False)
    key_id: Mapped[int | None] = mapped_column(Integer)  # a key changed
    user_id: Mapped[int | None] = mapped_column(Integer)  # an account changed: all its keys
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class KeyChangeCounter(db.Model):
    """One row (id 1): the last sequence number handed out."""

    __tablename__ = "key_change_counter"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    value: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), nullable=False)
