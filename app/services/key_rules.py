"""What a key's name, scopes, expiry and rotation grace may be: one rule each, for every door.

The API (schema, resources, actions) and the operator CLI used to check these with code of their
own, and the copies drifted (the CLI stripped names, counted no scopes). Each rule here is a plain
function: it returns the value or raises ValueError with a message that fits after a field name,
so the API makes it a 422 naming the attribute and the CLI a click.BadParameter naming the option.
Limits that come from the configuration are arguments, so the rules need no application context.
"""
from datetime import datetime, timedelta

from app.services import scopes as scope_rules

NAME_MAX_LENGTH = 100


def key_name(name: str) -> str:
    """Return `name` if it is 1 to 100 characters. Taken as sent: the API never stripped it."""
    if not 1 <= len(name) <= NAME_MAX_LENGTH:
        raise ValueError(f"Length must be between 1 and {NAME_MAX_LENGTH}.")
    return name


def key_scopes(scopes: list) -> list:
    """Return `scopes` if there are at most MAX_SCOPES and each follows the scope grammar."""
    if len(scopes) > scope_rules.MAX_SCOPES:
        raise ValueError(f"At most {scope_rules.MAX_SCOPES} scopes.")
    bad = [scope for scope in scopes if not scope_rules.is_valid_scope(scope)]
    if bad:
        raise ValueError(f"Invalid scope {bad[0]!r}: use 'word:word', '*' as a wildcard segment.")
    return scopes


def key_expiry(expires_at: datetime | None, now: datetime, max_days: int) -> datetime | None:
    """Return `expires_at` if it is None (never expires) or after `now` and within `max_days` of it."""
    if expires_at is None:
        return None
    if expires_at <= now:
        raise ValueError("must be in the future.")
    if expires_at > now + timedelta(days=max_days):
        raise ValueError(f"must be within {max_days} days.")
    return expires_at


def grace_seconds(grace, maximum: int) -> int:
    """Return `grace` if it is a whole number of seconds from 0 to `maximum` (a bool is no number)."""
    if not isinstance(grace, int) or isinstance(grace, bool) or not 0 <= grace <= maximum:
        raise ValueError(f"must be a whole number of seconds from 0 to {maximum}.")
    return grace
