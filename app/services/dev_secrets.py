"""Development secrets (SECRET_KEY, JWT_SECRET_KEY) generated once into instance/secrets.json.

Workers boot at the same time: the file is written only under an exclusive lock (flock on
secrets.json.lock), to a temporary file that is 0600 from its creation, then renamed into place.
A worker reads no file or a whole one, never a half-written one, and all of them agree.
"""
import fcntl
import json
import os
import secrets
from pathlib import Path


def load_or_create(path: Path, names) -> dict:
    """Return {name: secret} for `names`, generating (once, for every process) those not in `path`."""
    stored = _read(path)
    if any(name not in stored for name in names):
        lock = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            stored = _read(path)  # another worker may have written them while this one waited
            absent = [name for name in names if name not in stored]
            if absent:
                stored.update({name: secrets.token_urlsafe(48) for name in absent})
                _write(path, stored)
        finally:
            os.close(lock)  # and with it the lock
    return {name: stored[name] for name in names}


def _read(path: Path) -> dict:
    try:
        stored = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError:
        stored = None
    if not isinstance(stored, dict):
        raise RuntimeError(f"{path} is not a JSON object: delete it to generate new development secrets.")
    try:
        if os.stat(path).st_mode & 0o077:  # written by an older version: make it private
            os.chmod(path, 0o600)
    except OSError:
        pass  # not ours to change
    return stored


def _write(path: Path, stored: dict):
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)  # left by a crash; only lock holders write it
    with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        json.dump(stored, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
