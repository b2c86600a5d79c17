"""Signed verification tokens: what `"token": true` on POST /v1/api-keys/verify adds to a valid answer.

A token is a JWT signed with Ed25519 (alg EdDSA, header `kid`) that a service can hand on to its own
services, which check it offline against GET /.well-known/jwks.json. Its claims: `iss`
(VERIFY_TOKEN_ISSUER), `aud` (the service that asked: `key:<caller key id>` or `user:<admin id>`),
`sub` (the verified key's id), `owner` (its owner's id), `scopes` (the key's own), `code` ("VALID"),
`iat`, `exp` and a random `jti`. It lives VERIFY_TOKEN_SECONDS (300 by default), never past the
key's expiry, nor past the end of its rotation grace when the secret checked was the replaced one.

What a token does not say:
- nothing about allowances left: rate limits, quotas and budgets are counted and enforced only by
  asking Latchkey (each verification charges them); a token is never a budget to spend offline;
- nothing later than its `iat`: a key revoked, suspended or narrowed after that keeps its tokens
  valid until they expire. That is the price of checking offline; VERIFY_TOKEN_SECONDS bounds it,
  so shorten it where a revocation must take effect sooner (or verify with Latchkey instead).

Where the signing keys live: in the database (table `signing_keys`), not in configuration. A
rotation is then one command (`manage.py tokens rotate-signing-key`) that reaches every worker on
every host within REFRESH_SECONDS with no redeploy, and the service itself keeps a replaced key
published until the tokens it signed have expired, then deletes it; keys in configuration would
need a redeploy per rotation, and the operator to carry the old public key through the overlap.
The private half is stored only encrypted, with Fernet under a key derived from SECRET_KEY by
HKDF-SHA256 (`fernet`): a database dump or backup alone does not give it. Changing SECRET_KEY makes
the stored private keys unreadable: the next token request then makes a new key (with a warning),
and the old public keys stay published until their tokens have expired.

Per worker, `Signer` keeps the current key (the newest one not retired) decrypted in memory and
checks which key is current at most every REFRESH_SECONDS, and only when a token is asked for: a
verification without a token does no work here. A key is made at the first token request if there
is none. A replaced key is `retired_at` its replacement's creation and stays in the JWKS for
VERIFY_TOKEN_SECONDS + RETIRE_MARGIN_SECONDS more (a worker may sign with it for up to
REFRESH_SECONDS after the rotation; the rest covers clocks that differ between hosts).
"""
import base64
import hashlib
import logging
import math
import secrets
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import jwt
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import OperationalError

from app.extensions import db, state
from app.models import SigningKey
from app.models.types import utcnow
from app.services import clock
from app.services.key_cache import KeyRecord

ALGORITHM = "EdDSA"
REFRESH_SECONDS = 5.0  # how stale a worker's idea of the current key may be
RETIRE_MARGIN_SECONDS = 60  # beyond VERIFY_TOKEN_SECONDS: REFRESH_SECONDS and clock differences
_HKDF_INFO = b"latchkey signing keys at rest v1"
log = logging.getLogger(__name__)


def fernet(secret_key: str) -> Fernet:
    """Return the Fernet that encrypts signing keys at rest: its key is HKDF-SHA256 of SECRET_KEY."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(x: str) -> str:
    """The RFC 7638 thumbprint of the Ed25519 public key `x` (base64url): its `kid`."""
    return _b64(hashlib.sha256(f'{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}'.encode()).digest())


def jwk(kid: str, x: str) -> dict:
    """The public JWK of a signing key, as the JWKS lists it."""
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": ALGORITHM}


@dataclass(frozen=True)
class CurrentKey:
    kid: str
    private_key: Ed25519PrivateKey = field(repr=False)


class Signer:
    """Issues tokens with this worker's current signing key (see the module's docstring)."""

    def __init__(self, *, secret_key: str, issuer: str, seconds: int):
        self.issuer = issuer  # VERIFY_TOKEN_ISSUER
        self.seconds = seconds  # VERIFY_TOKEN_SECONDS
        self._fernet = fernet(secret_key)
        self._current: CurrentKey | None = None
        self._checked_at = float("-inf")

    def issue(self, record: KeyRecord, audience: str, now: datetime) -> str:
        """Return a compact JWS saying that `record`'s key was valid at `now`, for `audience`.

        Budgets and rate limits are only enforced by asking Latchkey: the token says nothing about
        allowances left. A key revoked after `now` keeps this token valid until its `exp`."""
        key = self.current()
        ends = now + timedelta(seconds=self.seconds)
        for limit in (record.expires_at, record.grace_until):
            if limit is not None and limit < ends:
                ends = limit
        claims = {"iss": self.issuer, "aud": audience, "sub": str(record.id), "owner": str(record.user_id),
                  "scopes": list(record.scopes), "code": "VALID", "iat": math.floor(now.timestamp()),
                  "exp": math.floor(ends.timestamp()), "jti": secrets.token_urlsafe(16)}
        return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})

    def current(self) -> CurrentKey:
        """Return the current key: the cached one, re-checked at most every REFRESH_SECONDS (kept
        while the database is unreachable); made first if there is none."""
        now = clock.monotonic()
        if self._current is not None and now - self._checked_at < REFRESH_SECONDS:
            return self._current
        try:
            with db.engine.connect() as connection:
                row = connection.execute(
                    select(SigningKey.kid, SigningKey.encrypted_private_key).where(SigningKey.retired_at.is_(None))
                    .order_by(SigningKey.id.desc()).limit(1)).first()
        except OperationalError:
            if self._current is None:
                raise
            log.warning("signing key: database unavailable, still signing with key %s", self._current.kid)
            self._checked_at = now
            return self._current
        if row is None:
            self._current = self.make_key()
        elif self._current is None or row.kid != self._current.kid:
            try:
                private = Ed25519PrivateKey.from_private_bytes(self._fernet.decrypt(row.encrypted_private_key))
                self._current = CurrentKey(row.kid, private)
            except InvalidToken:
                log.warning("signing key %s cannot be decrypted with this SECRET_KEY: making a new one", row.kid)
                self._current = self.make_key()
        self._checked_at = now
        return self._current

    def make_key(self, connection: Connection | None = None) -> CurrentKey:
        """Make a new current key and retire every other one, in one transaction (`connection`'s if
        given, which its owner commits); return it."""
        private = Ed25519PrivateKey.generate()
        x = _b64(private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
        kid = thumbprint(x)
        encrypted = self._fernet.encrypt(private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())).decode()
        now = utcnow()
        with db.engine.begin() if connection is None else nullcontext(connection) as connection:
            new_id = connection.execute(insert(SigningKey).returning(SigningKey.id).values(
                kid=kid, public_key=x, encrypted_private_key=encrypted, created_at=now)).scalar_one()
            connection.execute(update(SigningKey).where(SigningKey.retired_at.is_(None), SigningKey.id != new_id)
                               .values(retired_at=now))
        log.info("signing key %s made: it signs verification tokens from now on", kid)
        self._current, self._checked_at = CurrentKey(kid, private), clock.monotonic()
        return self._current

    def published(self) -> list[dict]:
        """Return the JWKs of every key that may have signed a token still valid, newest first.

        The others are deleted. A key left unretired by two workers that each made a first key at
        once is retired here, now (later than it was replaced: it stays published longer)."""
        now = utcnow()
        listed_for = timedelta(seconds=self.seconds + RETIRE_MARGIN_SECONDS)
        with db.engine.connect() as connection:
            rows = connection.execute(select(SigningKey.id, SigningKey.kid, SigningKey.public_key,
                                             SigningKey.retired_at).order_by(SigningKey.id.desc())).all()
        current = next((row.id for row in rows if row.retired_at is None), None)
        unretired = [row.id for row in rows if row.retired_at is None and row.id != current]
        gone = {row.id for row in rows if row.retired_at is not None and row.retired_at + listed_for <= now}
        if unretired or gone:
            with db.engine.begin() as connection:
                if unretired:
                    connection.execute(update(SigningKey).where(SigningKey.id.in_(unretired),
                                                                SigningKey.retired_at.is_(None)).values(retired_at=now))
                if gone:
                    connection.execute(delete(SigningKey).where(SigningKey.id.in_(gone)))
                    log.info("signing keys deleted, their tokens all expired: %s",
                             ", ".join(row.kid for row in rows if row.id in gone))
        return [jwk(row.kid, row.public_key) for row in rows if row.id not in gone]

    def listed_until(self, retired_at: datetime) -> datetime:
        """When a key retired at `retired_at` leaves the JWKS."""
        return retired_at + timedelta(seconds=self.seconds + RETIRE_MARGIN_SECONDS)


def init_app(app):
    if app.config["VERIFY_TOKEN_SECONDS"] <= 0:
        raise RuntimeError(f"VERIFY_TOKEN_SECONDS={app.config['VERIFY_TOKEN_SECONDS']} must be a positive number "
                           "of seconds.")
    app.extensions["latchkey_signer"] = Signer(secret_key=app.config["SECRET_KEY"],
                                               issuer=app.config["VERIFY_TOKEN_ISSUER"],
                                               seconds=app.config["VERIFY_TOKEN_SECONDS"])


def signer() -> Signer:
    return state("latchkey_signer")
