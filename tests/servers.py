"""Real processes for the multi-worker tests: a fresh database, gunicorn, a private redis-server.

Every server is started on a free loopback port and stopped by the test that started it; the
machine's shared PostgreSQL and Redis are never reconfigured (a private database is created on
the shared PostgreSQL and dropped afterwards).
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def redis_url_or_none():
    uri = os.environ.get("RATELIMIT_STORAGE_URI") or os.environ.get("REDIS_URL") or ""
    return uri if uri.startswith("redis://") else None


@contextmanager
def fresh_database(tmp_path, base=None):
    """Yield the URL of an empty database: a private PostgreSQL database when `base` (default:
    DATABASE_URL) is PostgreSQL, else a SQLite file; then drop it."""
    base = base or os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgres"):
        yield f"sqlite:///{tmp_path / 'proc.db'}"
        return
    name = f"latchkey_proc_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(base.replace("postgresql://", "postgresql+psycopg://", 1))
    admin = create_engine(urlunsplit(parts), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run_migrations(env):
    subprocess.run([sys.executable, "manage.py", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=120)


@contextmanager
def gunicorn(env, workers=4, app_spec="app:create_app()", ready_path="/healthz"):
    """Start `app_spec` under gunicorn with `workers` workers; yield its base URL; stop it."""
    port = free_port()
    env = dict(env, PORT=str(port), WEB_CONCURRENCY=str(workers))
    log = open(env.get("GUNICORN_LOG", os.devnull).replace("{port}", str(port)), "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:app.gunicorn_conf", "--bind", f"127.0.0.1:{port}",
         app_spec], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{base}{ready_path}", timeout=1).status_code == 200, 30, "gunicorn")
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


class PrivateRedis:
    """A redis-server of our own on a free port, which tests may stop and start again."""

    def __init__(self, tmp_path):
        self.port = free_port()
        self.dir = tmp_path
        self.process = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        wait_until(lambda: redis.Redis(port=self.port).ping(), 10, "redis-server")

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def service_env(database_url, storage_uri, **extra):
    """The environment of a service under test: production-like, with test secrets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "RATELIMIT_", "REDIS_URL"))}
    env.update(
        DATABASE_URL=database_url, RATELIMIT_STORAGE_URI=storage_uri,
        RATELIMIT_KEY_PREFIX=f"lkproc-{uuid.uuid4().hex[:10]}",
        SECRET_KEY="process-test-secret-key-0123456789", JWT_SECRET_KEY="process-test-jwt-secret-0123456789",
        LATCHKEY_ENV="production", ARGON2_TIME_COST="1", ARGON2_MEMORY_COST="8192",
        USAGE_FLUSH_SECONDS="0.5", PYTHONPATH=str(ROOT),
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env
