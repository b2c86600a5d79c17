"""The monotonic clock that the per-process caches and leases read (key_cache, redis_counters).

They call `clock.monotonic()` at each use, so a test can move time exactly with
`monkeypatch.setattr(clock, "monotonic", ...)` (tests/helpers.py: `timeline`) instead of sleeping.
"""
import time

monotonic = time.monotonic
