"""The gateway's errors, as OpenAI's API writes them: `{"error": {"message", "type", "param", "code"}}`."""
import json

from flask import Response


class GatewayError(Exception):
    def __init__(self, status: int, message: str, kind: str, code: str | None = None, headers=None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.headers = status, message, kind, code, headers or {}

    def response(self) -> Response:
        return error_response(self.status, {"message": self.message, "type": self.kind, "param": None,
                                            "code": self.code}, self.headers)


def error_response(status: int, error: dict, headers=None) -> Response:
    return Response(json.dumps({"error": error}), status, headers, mimetype="application/json")
