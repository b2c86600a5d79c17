"""All models, imported here so Alembic's autogenerate sees every table."""
from app.models.api_key import ApiKey
from app.models.audit import AuditEvent
from app.models.change import KeyChange, KeyChangeCounter
from app.models.signing_key import SigningKey
from app.models.usage import KeyUsage
from app.models.user import LoginSession, User

__all__ = ["ApiKey", "AuditEvent", "KeyChange", "KeyChangeCounter", "KeyUsage", "LoginSession", "SigningKey",
           "User"]
