"""gunicorn settings: `gunicorn -c python:app.gunicorn_conf 'app:create_app()'`.

WEB_CONCURRENCY sets the number of workers (default 2), PORT the port (default 8000).
"""
import os

from config import Config

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
accesslog = "-"
# No query strings in the access log: a key sent there by mistake must not be written down.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss'
# gunicorn's control socket has one fixed path per user: two services on one host would share it.
control_socket_disable = True
# What gunicorn reads before the application sees a request; beyond these it answers 400 itself.
# The request line holds the query string (a JSON `filter` of up to 64 nodes, percent-encoded, fits);
# 50 headers and 8 KiB per header leave room for proxies' X-Forwarded-* and any JWT. Bodies are
# limited by the application: MAX_CONTENT_LENGTH (default 1 MiB), refused with 413 before reading.
limit_request_line = 8190  # gunicorn's maximum; its default is 4094
limit_request_fields = 50  # default 100
limit_request_field_size = 8190  # gunicorn's default, stated


def when_ready(server):
    if server.cfg.workers > 1 and Config.RATELIMIT_STORAGE_URI.startswith("memory://"):
        server.log.warning(
            "%d workers share no memory: with RATELIMIT_STORAGE_URI=memory:// every limit is %d times "
            "too generous. Set REDIS_URL.", server.cfg.workers, server.cfg.workers)
