"""GET /.well-known/jwks.json: the public keys that verification tokens are signed with.

Public and outside /v1 (a JWKS is plain JSON, RFC 7517, not a JSON:API document), so that a
service's JWT library can fetch it as it fetches any issuer's. It lists every signing key that may
have signed a token still valid (app/services/signing.py), newest first. Caches may keep it for
CACHE_SECONDS: a verifier that meets a `kid` it does not know fetches the set again (a rotation's
new key signs at once), and a replaced key stays listed long after its last token expired.
"""
from flask import Blueprint, jsonify

from app.services.signing import signer

bp = Blueprint("jwks", __name__)
CACHE_SECONDS = 300


@bp.get("/.well-known/jwks.json")
def jwks():
    """Return 200 with `{"keys": [...]}`: OKP/Ed25519 JWKs with `kid`, `use` "sig" and `alg` "EdDSA"."""
    response = jsonify(keys=signer().published())
    response.headers["Cache-Control"] = f"public, max-age={CACHE_SECONDS}"
    return response
