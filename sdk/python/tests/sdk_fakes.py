"""A fake Latchkey for the SDK's unit tests: Ed25519 signing keys made here, and a local HTTP server
that answers verifications with tokens they sign and serves their JWK set."""
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SERVICE_AUDIENCE = "key:1"


class Signer:
    """An Ed25519 signing key under `kid`: its public JWK, and tokens with Latchkey's claims."""

    def __init__(self, kid=None):
        self.kid = kid or f"test-{uuid.uuid4().hex[:8]}"
        self.private = Ed25519PrivateKey.generate()

    def jwk(self) -> dict:
        jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "alg": "EdDSA", "use": "sig"}

    def token(self, sub="42", lifetime=60, headers=None, **claims) -> str:
        now = int(time.time())
        payload = {"iss": "latchkey", "aud": SERVICE_AUDIENCE, "sub": sub, "owner": "7", "scopes": ["llm:*"],
                   "code": "VALID", "iat": now, "exp": now + lifetime, "jti": uuid.uuid4().hex, **claims}
        return jwt.encode(payload, self.private, algorithm="EdDSA", headers={"kid": self.kid, **(headers or {})})


class FakeLatchkey:
    """A local HTTP server playing Latchkey: POST /v1/api-keys/verify answers with `respond(body)`
    (default: valid, with a token of `signer`), GET /.well-known/jwks.json serves `jwks`. Records
    every verification request's body and arrival time."""

    def __init__(self):
        self.signer = Signer()
        self.jwks = {"keys": [self.signer.jwk()]}
        self.requests = []
        self.jwks_fetches = 0
        self.respond = self.valid
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path == "/.well-known/jwks.json":
                    fake.jwks_fetches += 1
                    self._send(200, {}, fake.jwks)
                else:
                    self._send(404, {}, {"errors": [{"status": "404"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"body": body, "at": time.monotonic(), "service": self.headers.get("X-API-Key")})
                status, headers, document = fake.respond(body)
                self._send(status, headers, document)

            def _send(self, status, headers, document):
                data = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.api+json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def valid(self, body, key_id="42", lifetime=60, token=None):
        meta = {"valid": True, "code": "VALID",
                "key": {"id": key_id, "owner-id": "7", "name": "app", "scopes": ["llm:*"], "metadata": {},
                        "cost": body.get("cost", 1), "expires-at": None},
                "budget": {"limit": 100, "period": "month", "used": 1, "remaining": 99,
                           "resets-at": "2099-01-01T00:00:00+00:00"}}
        if body.get("token"):
            meta["token"] = token or self.signer.token(sub=key_id, lifetime=lifetime)
        return 200, {}, {"meta": meta}

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def refusal(code, **meta):
    return 200, {}, {"meta": {"valid": False, "code": code, **meta}}
