"""All models, imported here so Alembic's autogenerate sees every table."""
from app.models.api_key import ApiKey
from app.models.user import RevokedSession, User

__all__ = ["ApiKey", "RevokedSession", "User"]
