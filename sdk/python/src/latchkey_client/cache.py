"""The answer cache: bounded, thread-safe, keyed by what was asked, never by the key itself.

A cache key is (SHA-256 digest of the API key, the asked scopes sorted, the end client's address).
The raw key is never stored, in the cache or anywhere else in the SDK; log lines name a key by the
first 8 hex digits of its digest (`key_hint`).
"""
import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from latchkey_client.tokens import TokenClaims
from latchkey_client.verification import Verification

CacheKey = tuple[bytes, tuple[str, ...], str | None]


def cache_key(key: str, scopes: Iterable[str], ip: str | None) -> CacheKey:
    """Return the cache key of a question: the key's SHA-256 digest, the scopes, the address."""
    return hashlib.sha256(key.encode()).digest(), tuple(sorted(set(scopes))), ip


def key_hint(digest: bytes) -> str:
    """How logs name a key: 'sha256:' and 8 hex digits of its digest (not enough to look it up)."""
    return "sha256:" + digest[:4].hex()


@dataclass(slots=True)
class Entry:
    """A cached answer: served as `hit` (the answer marked FROM_CACHE) until `fresh_until`, and
    under fail="cached", while Latchkey is unreachable, until `usable_until` (monotonic seconds).
    `claims` are its token's, re-checked on every use, when Latchkey signed it."""

    answer: Verification
    hit: Verification
    fresh_until: float
    usable_until: float
    claims: TokenClaims | None = None


class AnswerCache:
    """At most `max_entries` answers; when full, a new one evicts the oldest."""

    def __init__(self, max_entries: int = 10_000, monotonic: Callable[[], float] = time.monotonic):
        self.max_entries = max_entries
        self._monotonic = monotonic
        self._entries: dict[CacheKey, Entry] = {}
        self._lock = threading.Lock()

    def get(self, key: CacheKey) -> Entry | None:
        """Return the entry for `key` that is still usable (fresh or not), dropping an expired one."""
        entry = self._entries.get(key)
        if entry is not None and entry.usable_until <= self._monotonic():
            self.drop(key, entry)
            return None
        return entry

    def put(self, key: CacheKey, entry: Entry):
        with self._lock:
            self._entries.pop(key, None)
            while len(self._entries) >= self.max_entries:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = entry

    def drop(self, key: CacheKey, entry: Entry | None = None):
        """Remove `key` (only if it still holds `entry`, when given)."""
        with self._lock:
            if entry is None or self._entries.get(key) is entry:
                self._entries.pop(key, None)

    def clear(self):
        with self._lock:
            self._entries.clear()

    def keys(self) -> list[CacheKey]:
        """The cache keys, for inspection: digests, scopes and addresses only."""
        with self._lock:
            return list(self._entries)

    def entries(self) -> list[Entry]:
        with self._lock:
            return list(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)
