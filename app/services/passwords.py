"""Password hashing with argon2id."""
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

# A hash of a random password, verified against when the email is unknown, so that a wrong
# email costs the same time as a wrong password.
_DUMMY_PASSWORD = "latchkey-dummy-password-for-timing"


def _hasher() -> PasswordHasher:
    cfg = current_app.config
    return PasswordHasher(time_cost=cfg["ARGON2_TIME_COST"], memory_cost=cfg["ARGON2_MEMORY_COST"])


def hash_password(password: str) -> str:
    """Return the argon2id hash of `password`."""
    return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Return True if `password` matches; with no hash, spend the same time and return False."""
    hasher = _hasher()
    if password_hash is None:
        if "latchkey_dummy_hash" not in current_app.extensions:
            current_app.extensions["latchkey_dummy_hash"] = hasher.hash(_DUMMY_PASSWORD)
        password_hash, password = current_app.extensions["latchkey_dummy_hash"], _DUMMY_PASSWORD + "x"
    try:
        return hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
