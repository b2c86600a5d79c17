"""The audit trail: append-only, written in the same transaction as the change it records.

No foreign keys: the history of a user or key outlives its deletion.
"""
from sqlalchemy import JSON, Integer, String, case, cast
from sqlalchemy.orm import Mapped, column_property, mapped_column, relationship

from app.extensions import db
from app.models.types import UTCDateTime, utcnow


class AuditEvent(db.Model):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False, index=True)
    action: Mapped[str] = mapped_column(String(40), nullable=False, index=True)
    actor_user_id: Mapped[int | None] = mapped_column(Integer, index=True)
    actor_key_id: Mapped[int | None] = mapped_column(Integer)
    # The user whose account or key the event is about: they see it in their own trail.
    subject_user_id: Mapped[int | None] = mapped_column(Integer, index=True)
    target_type: Mapped[str | None] = mapped_column(String(20))
    target_id: Mapped[str | None] = mapped_column(String(40), index=True)
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(255))
    # Names of the fields that changed: never their values, so never a secret.
    changes = mapped_column(JSON, nullable=False, default=list)

    # For the API's relationships: the id of a key event's key, a number as key ids are (filters
    # compare it with them), and the rows the ids name, read-only, None once a row is deleted.
    target_key_id = column_property(case((target_type == "key", cast(target_id, Integer))))
    actor = relationship("User", primaryjoin="foreign(AuditEvent.actor_user_id) == User.id", viewonly=True)
    actor_key = relationship("ApiKey", primaryjoin="foreign(AuditEvent.actor_key_id) == ApiKey.id", viewonly=True)
    subject = relationship("User", primaryjoin="foreign(AuditEvent.subject_user_id) == User.id", viewonly=True)
    target_key = relationship("ApiKey", viewonly=True, primaryjoin="and_(AuditEvent.target_type == 'key', "
                              "foreign(AuditEvent.target_id) == cast(remote(ApiKey.id), String))")
