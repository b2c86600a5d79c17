"""Scopes: `word:word[:...]` strings where a `*` segment is a wildcard.

`llm:*` covers `llm:gpt-4o` (a trailing `*` also covers deeper segments, `llm:openai:gpt-4o`).
"""
import functools
import re

SEGMENT_RE = re.compile(r"\*|[a-z0-9][a-z0-9_.-]{0,63}")  # used with fullmatch: "$" would take "x\n"
MAX_SCOPES = 50

CATALOG = {
    "users:read": "Read the owner's account (and, with admin:access, every account).",
    "users:write": "Change or delete the owner's account.",
    "keys:read": "List and read API keys, their usage and relationships.",
    "keys:write": "Create, change, revoke, suspend, reactivate, rotate and delete API keys.",
    "keys:verify": "Verify other keys through POST /v1/api-keys/verify (granted by admins only).",
    "usage:read": "Read usage analytics.",
    "audit:read": "Read the audit trail.",
    "admin:access": "Use the owner's admin rights (only when the owner is an admin).",
}
# Only an admin may put these into a key, directly or through a wildcard that covers them.
ADMIN_ONLY = ("keys:verify", "admin:access")


def is_valid_scope(scope) -> bool:
    """Return True if `scope` follows the grammar: two or more segments, `*` as a wildcard."""
    if not isinstance(scope, str) or len(scope) > 200:
        return False
    segments = scope.split(":")
    return len(segments) >= 2 and all(SEGMENT_RE.fullmatch(segment) for segment in segments)


def covers(granted: str, wanted: str) -> bool:
    """Return True if the scope pattern `granted` includes everything `wanted` names."""
    have, want = granted.split(":"), wanted.split(":")
    for index, segment in enumerate(have):
        if index >= len(want):
            return False
        if segment == "*":
            if index == len(have) - 1:
                return True
            continue
        if segment != want[index]:
            return False
    return len(have) == len(want)


def allows(granted_scopes, wanted: str) -> bool:
    """Return True if any of `granted_scopes` covers `wanted`."""
    return any(covers(granted, wanted) for granted in granted_scopes)


def is_admin_only(scope: str) -> bool:
    """Return True if `scope` (a scope or a pattern) names or covers an admin-only scope."""
    return any(covers(scope, admin_scope) for admin_scope in ADMIN_ONLY)


def key_allows(granted_scopes, owner_is_admin: bool, wanted: str) -> bool:
    """Return True if a key with `granted_scopes` may use `wanted` now: admin-only scopes take
    effect only while the key's owner is an admin, whatever the key was granted."""
    return _key_allows(tuple(granted_scopes), owner_is_admin, wanted)


@functools.lru_cache(maxsize=65536)  # the hot path asks the same few questions again and again
def _key_allows(granted_scopes: tuple, owner_is_admin: bool, wanted: str) -> bool:
    if not owner_is_admin and is_admin_only(wanted):
        return False
    return allows(granted_scopes, wanted)
