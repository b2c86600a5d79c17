# Latchkey under gunicorn, as a non-root user.
#
#   docker build -t latchkey .
#   # Release step, once per release and before the new image serves (never on each replica's start):
#   docker run --rm --env-file latchkey.env latchkey python manage.py db upgrade
#   # Then as many replicas as needed:
#   docker run -d --env-file latchkey.env -p 8000:8000 latchkey
#
# latchkey.env holds DATABASE_URL=postgresql://..., REDIS_URL=redis://..., SECRET_KEY=..., JWT_SECRET_KEY=...
# (the release step needs the secrets too: in production the app refuses to start without them).
# Without DATABASE_URL the database is a SQLite file in /srv/latchkey/instance, inside the container:
# mount one volume there for both the release step and the (single) serving container.
#
# Base image: python:3.11.15-slim-bookworm (Python 3.11, as requirements.txt is tested on), pinned
# by the digest of its multi-architecture index so that every build starts from the same bytes.
# To move to a newer build (Debian security fixes) or patch release, take the index digest from
#   docker buildx imagetools inspect python:3.11-slim-bookworm
# (the "Digest:" line at the top, not a per-platform one) and replace both the tag and the digest.
FROM python:3.11.15-slim-bookworm@sha256:b18992999dbe963a45a8a4da40ac2b1975be1a776d939d098c647482bcad5cba

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LATCHKEY_ENV=production PORT=8000 WEB_CONCURRENCY=4
# Request bodies over this many bytes are answered 413 before they are read (chunked ones: after at
# most this many). gunicorn's limits on the request line and headers are in app/gunicorn_conf.py
# (limit_request_line 8190, limit_request_fields 50, limit_request_field_size 8190).
ENV MAX_CONTENT_LENGTH=1048576
WORKDIR /srv/latchkey

COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

# Only what runs (.dockerignore denies everything else as well): no tests, bench, scripts, CI or
# docs. The files stay root's, so the service user cannot change its own code.
COPY config.py manage.py ./
COPY app/ app/
COPY migrations/ migrations/
# Byte-code once, at build time (PYTHONDONTWRITEBYTECODE keeps the running service from writing any).
RUN python -m compileall -q app migrations config.py manage.py

# instance/ holds the SQLite database and development secrets when used: the service user's only.
# A numeric USER, so that an orchestrator can tell it is not root (Kubernetes' runAsNonRoot).
RUN groupadd --system --gid 10001 latchkey \
    && useradd --system --create-home --uid 10001 --gid latchkey latchkey \
    && install -d -m 0700 -o latchkey -g latchkey instance
USER 10001:10001
EXPOSE 8000

# Liveness: GET /healthz on $PORT (no curl in slim images: Python's urllib). A non-2xx answer or no
# answer within the timeout raises, and the exit status 1 marks the container unhealthy. Readiness
# (the database and the limiter storage) is /readyz, for a load balancer or orchestrator to poll.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/healthz', timeout=4)"]

# gunicorn is PID 1 (exec form): SIGTERM from `docker stop` is its graceful shutdown. No migration
# here: see the release step above.
CMD ["gunicorn", "-c", "python:app.gunicorn_conf", "app:create_app()"]
