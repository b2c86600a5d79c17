# Latchkey under gunicorn, as a non-root user. Migrations run at start (idempotent).
# docker run -e DATABASE_URL=postgresql://... -e REDIS_URL=redis://... \
#            -e SECRET_KEY=... -e JWT_SECRET_KEY=... -p 8000:8000 latchkey
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LATCHKEY_ENV=production PORT=8000 WEB_CONCURRENCY=4
# Request bodies over this many bytes are answered 413 before they are read (chunked ones: after at
# most this many). gunicorn's limits on the request line and headers are in app/gunicorn_conf.py
# (limit_request_line 8190, limit_request_fields 50, limit_request_field_size 8190).
ENV MAX_CONTENT_LENGTH=1048576
WORKDIR /srv/latchkey
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# instance/ holds the SQLite database and development secrets when used: the service user's only.
RUN useradd --system --create-home --uid 10001 latchkey && install -d -m 0700 -o latchkey instance
USER latchkey
EXPOSE 8000
CMD ["sh", "-c", "python manage.py db upgrade && exec gunicorn -c python:app.gunicorn_conf 'app:create_app()'"]
