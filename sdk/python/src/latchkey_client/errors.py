"""What can go wrong besides a key being refused (a refusal is a `Verification` with `valid=False`)."""


class LatchkeyError(Exception):
    """Base class: the SDK could not get a trustworthy answer. No fail policy lets a request through
    on this class itself; only `LatchkeyUnavailable` is subject to the `fail` policy."""


class LatchkeyUnavailable(LatchkeyError):
    """Latchkey could not be asked: a connection failure or timeout, or a 5xx answer (503
    DATABASE_UNAVAILABLE, LIMITS_UNAVAILABLE, ...) after the retries. `status` is the last HTTP
    status (None for a transport failure); `retry_after` the seconds Latchkey asked to wait, when it
    said."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class LatchkeyRequestError(LatchkeyError):
    """Latchkey refused the service's request itself (401/403: a wrong or insufficient service key;
    422: a malformed scope or address). A configuration error: never retried, never let through."""

    def __init__(self, status: int, code: str | None, detail: str):
        super().__init__(f"Latchkey refused the verification request: {status} {code or ''} {detail}".strip())
        self.status = status
        self.code = code
        self.detail = detail


class LatchkeyThrottled(LatchkeyRequestError):
    """Latchkey answered 429 to the service itself, after the retries: its address is over the
    failed-authentication limit (RATE_LIMITED: the service key is wrong or revoked, or other callers
    from its address fail), or the service key's own quota is spent (QUOTA_EXCEEDED). Latchkey is
    up and refuses this service, so no fail policy lets a request through on it; the integrations
    answer 503. `retry_after`: the seconds Latchkey asked to wait, when it said."""

    def __init__(self, status: int, code: str | None, detail: str, *, retry_after: float | None = None):
        super().__init__(status, code, detail)
        self.retry_after = retry_after


class InvalidToken(LatchkeyError):
    """A signed answer (token) that does not check out: bad signature, unknown signing key, wrong
    audience or issuer, expired, or claims that contradict the answer it came with."""
