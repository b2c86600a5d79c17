"""What may happen to a key: mint, revoke, suspend, reactivate, rotate. No HTTP and no commit
here: the API and the CLI call these, then commit (with the audit event) in one transaction."""
from datetime import timedelta

from sqlalchemy import func, select, update

from app.extensions import db
from app.models import ApiKey, User
from app.models.api_key import ACTIVE, EXPIRED, REVOKED, SUSPENDED
from app.models.types import utcnow
from app.services.key_format import generate_key


class KeyStateError(Exception):
    """The action does not fit the key's state (answered 409)."""


class KeyLimitError(Exception):
    """The owner already has the maximum number of keys (answered 409)."""


def new_secret_fields(prefix: str) -> dict:
    """Return the column values of a fresh secret, plus the secret itself (kept in memory only)."""
    key = generate_key(prefix)
    return {"digest": key.digest, "start": key.start, "last4": key.last4, "plaintext_secret": key.secret}


def reserve_key_slot(owner_id: int, maximum: int):
    """Lock the owner's row, then count: two concurrent creations cannot both take the last slot.

    The no-op UPDATE row-locks the user on PostgreSQL and takes the write lock on SQLite, until
    the transaction that creates the key commits.
    """
    db.session.execute(update(User).where(User.id == owner_id).values(updated_at=User.updated_at))
    count = db.session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.user_id == owner_id)) or 0
    if count >= maximum:
        raise KeyLimitError(f"A user may have at most {maximum} API keys; delete unused ones.")


def revoke(key: ApiKey):
    if key.status == REVOKED:
        raise KeyStateError("The key is already revoked; revocation is final.")
    key.status, key.revoked_at = REVOKED, utcnow()
    key.previous_digest = key.previous_valid_until = None


def suspend(key: ApiKey):
    if key.status != ACTIVE:
        raise KeyStateError(f"Only an active key can be suspended; this one is {key.status}.")
    key.status, key.suspended_at = SUSPENDED, utcnow()


def reactivate(key: ApiKey):
    if key.status != SUSPENDED:
        raise KeyStateError(f"Only a suspended key can be reactivated; this one is {key.status}.")
    key.status, key.suspended_at = ACTIVE, None


def rotate(key: ApiKey, grace_seconds: int, prefix: str) -> str:
    """Give the key a new secret and return it; the old one stays valid for `grace_seconds`."""
    if key.effective_status() in (REVOKED, EXPIRED):
        raise KeyStateError(f"A {key.effective_status()} key cannot be rotated.")
    old_digest = key.digest
    fields = new_secret_fields(prefix)
    secret = fields.pop("plaintext_secret")
    for name, value in fields.items():
        setattr(key, name, value)
    if grace_seconds > 0:
        key.previous_digest, key.previous_valid_until = old_digest, utcnow() + timedelta(seconds=grace_seconds)
    else:
        key.previous_digest = key.previous_valid_until = None
    key.plaintext_secret = secret
    return secret
