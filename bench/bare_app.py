"""The yardstick: a bare Flask JSON endpoint, served with the same gunicorn settings as Latchkey."""
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/healthz")
def healthz():
    return jsonify(status="ok")


@app.route("/json", methods=["GET", "POST"])
def bare_json():
    """Parse the JSON body if any, answer a small JSON document: no auth, no limits, no database."""
    body = request.get_json(silent=True) or {}
    return jsonify(meta={"valid": True, "code": "VALID", "echo": len(body)})
