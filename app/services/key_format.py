"""The API key format: `<prefix>_<32 base62 chars><6 base62 chars of CRC32>`.

32 base62 characters carry 190 bits from `secrets`. The checksum lets a mistyped or truncated key
be rejected before any database lookup, as GitHub's tokens do. Only a SHA-256 digest is stored:
with 190 random bits there is nothing to brute-force, so no server-side pepper is needed (and
none has to be shared between hosts or rotated); see README "Why SHA-256".
"""
import hashlib
import re
import secrets
import string
import zlib
from dataclasses import dataclass

ALPHABET = string.digits + string.ascii_letters
RANDOM_LENGTH = 32
CHECKSUM_LENGTH = 6
START_LENGTH = 6  # random characters shown after the prefix, for recognising a key
PREFIX_RE = re.compile(r"[a-z][a-z0-9]{0,15}")  # API_KEY_PREFIX, checked at start with fullmatch
BODY_RE = re.compile(f"[{ALPHABET}]{{{RANDOM_LENGTH + CHECKSUM_LENGTH}}}")


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        chars.append(ALPHABET[rest])
    return "".join(reversed(chars))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LENGTH)


@dataclass(frozen=True)
class NewKey:
    secret: str  # shown to the user once, never stored
    digest: str
    start: str
    last4: str


def hash_secret(secret: str) -> str:
    """Return the hex SHA-256 digest under which a key is stored and looked up."""
    return hashlib.sha256(secret.encode()).hexdigest()


def generate_key(prefix: str) -> NewKey:
    """Return a fresh key with its digest and display parts."""
    body = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    secret = f"{prefix}_{body}{_checksum(body)}"
    return NewKey(secret, hash_secret(secret), secret[: len(prefix) + 1 + START_LENGTH], secret[-4:])


def is_well_formed(secret: str, prefix: str) -> bool:
    """Return True if `secret` has the prefix, the length, the alphabet and a valid checksum."""
    head = prefix + "_"
    rest = secret[len(head):]
    if not secret.startswith(head) or not BODY_RE.fullmatch(rest):
        return False
    body, checksum = rest[:RANDOM_LENGTH], rest[RANDOM_LENGTH:]
    return secrets.compare_digest(_checksum(body), checksum)


def looks_like_key(credential: str, prefix: str) -> bool:
    """Return True if a bearer credential is meant as an API key rather than a JWT."""
    return credential.startswith(prefix + "_")
