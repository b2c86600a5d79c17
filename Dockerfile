# Latchkey under gunicorn, as a non-root user. Migrations run at start (idempotent).
# docker run -e DATABASE_URL=postgresql://... -e REDIS_URL=redis://... \
#            -e SECRET_KEY=... -e JWT_SECRET_KEY=... -p 8000:8000 latchkey
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LATCHKEY_ENV=production PORT=8000 WEB_CONCURRENCY=4
WORKDIR /srv/latchkey
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN useradd --system --create-home --uid 10001 latchkey && mkdir -p instance && chown latchkey instance
USER latchkey
EXPOSE 8000
CMD ["sh", "-c", "python manage.py db upgrade && exec gunicorn -c python:app.gunicorn_conf 'app:create_app()'"]
