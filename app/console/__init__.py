"""GET /console/: the Latchkey console, a browser client of the public JSON:API.

Static files only (HTML, CSS, ES modules, no build step): the console calls /v1 as any frontend
would, with the same documents, so it needs nothing the API does not offer. It uses hash routing
(/console/#/keys), so the server only ever serves index.html and the files it loads.

Every answer carries a strict Content-Security-Policy: scripts and styles from this origin only,
never inline, so markup injected through data could not run. The hooks are the blueprint's own, not
the app's: the fast path stays open (app/fast_path.py).
"""
from pathlib import Path

from flask import Blueprint, redirect, send_from_directory

STATIC = Path(__file__).parent / "static"
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",  # the API, on the same origin
    "form-action 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors' older spelling, for older browsers
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
}

bp = Blueprint("console", __name__, url_prefix="/console")


@bp.get("")
def without_slash():
    """Redirect /console to /console/, so the page's relative URLs (js/app.js) resolve under it."""
    return redirect("/console/", code=308)


@bp.get("/")
def index():
    """Return the console's single page."""
    return send_from_directory(STATIC, "index.html")


@bp.get("/<path:filename>")
def static_file(filename):
    """Return one of the console's files; 404 for anything else (send_from_directory refuses paths
    outside STATIC)."""
    return send_from_directory(STATIC, filename)


@bp.after_request
def add_security_headers(response):
    """Put the console's security headers on every answer under /console, errors included."""
    response.headers.update(SECURITY_HEADERS)
    return response
