"""latchkey_client: verify Latchkey API keys from a service.

    from latchkey_client import Latchkey
    latchkey = Latchkey("https://latchkey.internal", service_key, fail="closed")
    answer = latchkey.verify(key, scopes=["llm:gpt-4o"], ip="203.0.113.7")
    if not answer.valid: ...  # answer.code says why

Integrations: `latchkey_client.flask` (LatchkeyFlask, require_key) and `latchkey_client.wsgi`
(LatchkeyMiddleware). See README.md.
"""
from latchkey_client.cache import AnswerCache, cache_key, key_hint
from latchkey_client.client import FAIL_POLICIES, VERSION, Latchkey
from latchkey_client.errors import (
    InvalidToken,
    LatchkeyError,
    LatchkeyRequestError,
    LatchkeyThrottled,
    LatchkeyUnavailable,
)
from latchkey_client.responses import STATUS_OF
from latchkey_client.tokens import TokenClaims, TokenVerifier
from latchkey_client.verification import CODES, UNVERIFIED, VALID, Verification

__version__ = VERSION
__all__ = [
    "CODES", "FAIL_POLICIES", "STATUS_OF", "UNVERIFIED", "VALID", "AnswerCache", "InvalidToken", "Latchkey",
    "LatchkeyError", "LatchkeyRequestError", "LatchkeyThrottled", "LatchkeyUnavailable", "TokenClaims",
    "TokenVerifier", "Verification",
    "cache_key", "key_hint", "__version__",
]
