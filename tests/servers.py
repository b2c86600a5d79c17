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
    with gunicorn_master(env, workers, app_spec, ready_path) as master:
        yield master.base


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


class GunicornMaster:
    """A running gunicorn master (see `gunicorn_master`): its URL, pid and workers, and reloads."""

    def __init__(self, base, process):
        self.base = base
        self.process = process

    @property
    def pid(self) -> int:
        return self.process.pid

    def worker_pids(self) -> set:
        """The pids of the master's children (its workers) at this moment."""
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            return set()
        return {int(pid) for pid in children}

    def reload(self, workers, timeout=30.0):
        """Send SIGHUP (a graceful reload) and wait until `workers` new workers serve and every old
        one has exited (so it ran its exit path); return the new workers' pids."""
        old = self.worker_pids()
        os.kill(self.pid, signal.SIGHUP)

        def done():
            now = self.worker_pids()
            return len(now) == workers and not now & old

        wait_until(done, timeout, "a graceful reload")
        wait_until(lambda: requests.get(f"{self.base}/healthz", timeout=1).status_code == 200, timeout, "gunicorn")
        return self.worker_pids()


@contextmanager
def gunicorn_master(env, workers=4, app_spec="app:create_app()", ready_path="/healthz"):
    """As `gunicorn`, but yield a GunicornMaster (base URL, pid, workers, `reload()`). On exit the
    master and its workers get SIGTERM (a graceful stop) and are waited for."""
    port = free_port()
    env = dict(env, PORT=str(port), WEB_CONCURRENCY=str(workers))
    log = open(env.get("GUNICORN_LOG", os.devnull).replace("{port}", str(port)), "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:app.gunicorn_conf", "--bind", f"127.0.0.1:{port}",
         app_spec], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{base}{ready_path}", timeout=1).status_code == 200, 30, "gunicorn")
        wait_until(lambda: len(GunicornMaster(base, process).worker_pids()) == workers, 30, "the workers")
        yield GunicornMaster(base, process)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


# --- Fault injection: private servers that tests freeze (SIGSTOP) and thaw (SIGCONT) --------------


def backends_pass() -> bool:
    """Whether this run is `.ci/run`'s PostgreSQL + Redis pass, where fault tests must run (a missing
    binary there is a failure, not a skip)."""
    return redis_url_or_none() is not None or os.environ.get("DATABASE_URL", "").startswith("postgres")


class PausableRedis(PrivateRedis):
    """A PrivateRedis that can hang: pause() freezes the process (SIGSTOP), so connections stay open
    and nothing answers, as with a hung host; resume() (SIGCONT) thaws it. stop() resumes first."""

    def pause(self):
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self):
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGCONT)

    def stop(self):
        self.resume()
        super().stop()


def postgres_binaries():
    """Return the folder holding PostgreSQL's `initdb` and `postgres`, or None when not installed."""
    folders = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)
                     if p.parent.name.isdigit() else 0, reverse=True)
    which = shutil.which("initdb")
    if which:
        folders.append(Path(which).resolve().parent)
    for folder in folders:
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    return None


class PrivatePostgres:
    """A PostgreSQL cluster of our own: initdb in a fresh temporary folder, a postmaster on a free
    loopback port (trust authentication, user `postgres`, no fsync). Run as the `postgres` account
    when the tests run as root (initdb refuses root); the folder is then under /tmp and owned by
    it, since pytest's tmp_path is private to root. pause() freezes every process of the cluster
    (SIGSTOP to the postmaster and each of its children: open connections hang too, new ones are
    accepted by the kernel and never answered), resume() thaws them (SIGCONT); stop() resumes,
    shuts the cluster down and removes the folder."""

    def __init__(self):
        self.port = free_port()
        self.binaries = postgres_binaries()
        self.dir = None
        self.process = None

    @property
    def url(self):
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self):
        import pwd
        import tempfile

        if self.binaries is None:
            raise RuntimeError("the PostgreSQL server (initdb, postgres) is not installed")
        account = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        run_as = dict(user=account.pw_uid, group=account.pw_gid, extra_groups=[]) if account else {}
        self.dir = Path(tempfile.mkdtemp(prefix="latchkey-pg-"))
        if account:
            os.chown(self.dir, account.pw_uid, account.pw_gid)
        data = self.dir / "data"
        subprocess.run([str(self.binaries / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                        "-E", "UTF8", "--locale=C", "--no-sync"],
                       cwd=self.dir, check=True, capture_output=True, timeout=120, **run_as)
        with open(self.dir / "server.log", "w") as log:
            self.process = subprocess.Popen(
                [str(self.binaries / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(self.dir),
                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off",
                 "-c", "synchronous_commit=off"],
                cwd=self.dir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **run_as)

        def answers():
            import psycopg

            psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                            connect_timeout=2).close()
            return True

        wait_until(answers, 30, "the private PostgreSQL")

    def _children(self):
        """The postmaster's children (backends, checkpointer...: each in a session of its own)."""
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                children.append(int(stat.parent.name))
        return children

    def pause(self):
        os.kill(self.process.pid, signal.SIGSTOP)  # first: it forks no new backend meanwhile
        for pid in self._children():
            os.kill(pid, signal.SIGSTOP)

    def resume(self):
        if self.process is not None:
            for pid in self._children():
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            os.kill(self.process.pid, signal.SIGCONT)

    def stop(self):
        try:
            if self.process is not None:
                self.resume()
                self.process.send_signal(signal.SIGINT)  # fast shutdown: ends open sessions
                try:
                    self.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait()
                self.process = None
        finally:
            if self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None
