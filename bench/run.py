"""Benchmarks, always as ratios against a bare Flask JSON endpoint measured in the same run.

    .venv/bin/python bench/run.py limits    # issue 4: a rate-limited endpoint with an API key, memory:// and Redis
    .venv/bin/python bench/run.py verify    # issue 5: POST /v1/api-keys/verify at 1,000 and 1,000,000 keys

Both targets run under gunicorn with the same settings (sync workers, WEB_CONCURRENCY=--workers);
wrk loads them from this machine, alternating bare / Latchkey runs; medians of --runs runs.
Needs wrk (Debian package), PostgreSQL (BENCH_DATABASE_URL, default the local `test` server) and
Redis (BENCH_REDIS_URL). Results are printed and written to bench/results/.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from tests.servers import fresh_database, gunicorn, run_migrations, service_env  # noqa: E402

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
PRODUCTION = {"USAGE_FLUSH_SECONDS": "2"}  # service_env is set up for tests; measure the defaults


def wrk(url, seconds, connections, env):
    """Return (requests per second, p50 ms, p99 ms, non-2xx count) of one wrk run."""
    run = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(ROOT / "bench/post.lua"), url],
        env={**os.environ, **env}, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"wrk failed: {run.stdout}{run.stderr}")
    output = run.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    percentiles = {p: float(v) * UNITS[u] for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)", output, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return rps, percentiles["50"], percentiles["99"], int(errors.group(1)) if errors else 0


def compare(name, bare, latchkey, args):
    """Alternate bare and Latchkey runs; return medians and the throughput ratio."""
    results = {"bare": [], "latchkey": []}
    for _ in range(args.runs):
        for label, (url, env) in (("bare", bare), ("latchkey", latchkey)):
            results[label].append(wrk(url, args.duration, args.connections, env))
    summary = {"scenario": name}
    for label, runs in results.items():
        summary[label] = {"rps": statistics.median(r[0] for r in runs), "p50_ms": statistics.median(r[1] for r in runs),
                          "p99_ms": statistics.median(r[2] for r in runs), "non_2xx": sum(r[3] for r in runs),
                          "runs_rps": [round(r[0]) for r in runs]}
    summary["ratio"] = round(summary["latchkey"]["rps"] / summary["bare"]["rps"], 3)
    print(f"{name}: bare {summary['bare']['rps']:.0f} rps, latchkey {summary['latchkey']['rps']:.0f} rps, "
          f"ratio {summary['ratio']}, latchkey p50 {summary['latchkey']['p50_ms']:.2f} ms "
          f"p99 {summary['latchkey']['p99_ms']:.2f} ms (bare p50 {summary['bare']['p50_ms']:.2f} "
          f"p99 {summary['bare']['p99_ms']:.2f}), non-2xx {summary['latchkey']['non_2xx']}", flush=True)
    return summary


def seed(env, keys_file, real_keys, **key_attributes):
    """Create a service key (keys:verify) and `real_keys` keys to verify; write those secrets to keys_file."""
    from app import create_app
    from app.extensions import db
    from app.models import ApiKey, User
    from app.services import lifecycle
    from config import TestingConfig

    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=env["DATABASE_URL"], DATABASE_STATEMENT_TIMEOUT_MS=0,
                     RATELIMIT_STORAGE_URI=env["RATELIMIT_STORAGE_URI"])
    with app.app_context():
        # keys:verify works only while the key's owner is an admin
        owner = User(email=f"bench-{time.time_ns()}@example.com", password_hash="x", is_admin=True)
        db.session.add(owner)
        db.session.flush()

        def new_key(**attributes):
            fields = lifecycle.new_secret_fields("lk")
            db.session.add(ApiKey(user_id=owner.id, name="bench", **attributes, **fields))
            return fields["plaintext_secret"]

        service = new_key(scopes=["keys:verify", "keys:read"], rate_limit="100000000/minute")
        secrets = [new_key(scopes=["llm:*"], **key_attributes) for _ in range(real_keys)]
        db.session.commit()
        owner_id = owner.id
        db.engine.dispose()
    Path(keys_file).write_text("\n".join(secrets) + "\n")
    return app, owner_id, service


def fill_keys(app, owner_id, total):
    """Top the table up to `total` keys with generated digests (PostgreSQL: one INSERT ... SELECT)."""
    from app.extensions import db

    with app.app_context():
        have = db.session.scalar(text("SELECT count(*) FROM api_keys"))
        db.session.execute(text(
            "INSERT INTO api_keys (user_id, name, digest, start, last4, scopes, status, created_at, updated_at, "
            "allowed_ips, metadata, tags, version) SELECT :owner, 'bulk', encode(sha256(('bulk-' || g)::bytea), 'hex'), "
            "'lk_bulk00', 'bulk', '[]', 'active', now(), now(), '[]', '{}', '[]', 1 "
            "FROM generate_series(CAST(:start AS bigint), CAST(:end AS bigint)) AS g"), {"owner": owner_id, "start": have + 1, "end": total})
        db.session.commit()
        # Vacuum now, so that autovacuum does not wake up for the new rows during the measurement.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE api_keys"))
        count = db.session.scalar(text("SELECT count(*) FROM api_keys"))
        db.engine.dispose()
        return count


def bench_limits(args, tmp):
    """Issue 4: GET /v1/scopes with an API key (default limits + the key's own limit) vs bare GET."""
    summaries = []
    with fresh_database(tmp, DATABASE_URL) as database_url, gunicorn(
            service_env(database_url, REDIS_URL, **PRODUCTION), args.workers, "bench.bare_app:app") as bare:
        for storage in ("memory://", REDIS_URL):
            env = service_env(database_url, storage, RATE_LIMIT_DEFAULTS="100000000 per minute", **PRODUCTION)
            run_migrations(env)
            _, _, secret = seed(env, tmp / "unused.txt", 0)
            with gunicorn(env, args.workers) as latchkey:
                summaries.append(compare(f"rate-limited GET with an API key, {storage.split(':')[0]}",
                                         (f"{bare}/json", {}), (f"{latchkey}/v1/scopes", {"BENCH_AUTH": secret}), args))
    return summaries


def bench_verify(args, tmp):
    """Issue 5: POST /v1/api-keys/verify on PostgreSQL + Redis, at 1,000 then 1,000,000 keys."""
    summaries = []
    keys_file = tmp / "keys.txt"
    with fresh_database(tmp, DATABASE_URL) as database_url:
        env = service_env(database_url, REDIS_URL, **PRODUCTION)
        run_migrations(env)
        limits = {} if args.plain_keys else dict(rate_limit="100000000/minute", budget_limit=10**12,
                                                 budget_period="month")
        app, owner_id, service = seed(env, keys_file, args.hot_keys, **limits)
        post = {"BENCH_METHOD": "POST", "BENCH_KEYS": str(keys_file)}
        with gunicorn(env, args.workers, "bench.bare_app:app") as bare:
            for total in (1000, args.keys):
                count = fill_keys(app, owner_id, total)
                label = "keys without limits" if args.plain_keys else "keys with a rate limit and a budget"
                with gunicorn(env, args.workers) as latchkey:
                    summary = compare(f"verify, {count} {label}", (f"{bare}/json", post),
                                      (f"{latchkey}/v1/api-keys/verify", {**post, "BENCH_AUTH": service}), args)
                summary["keys"] = count
                summaries.append(summary)
    small, large = summaries
    print(f"verify throughput at {large['keys']} keys / at {small['keys']} keys: "
          f"{large['latchkey']['rps'] / small['latchkey']['rps']:.3f}")
    return summaries


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=["limits", "verify", "all"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--hot-keys", type=int, default=100, help="distinct keys the verify load cycles through")
    parser.add_argument("--plain-keys", action="store_true",
                        help="verified keys carry no rate limit or budget (no Redis round trip)")
    args = parser.parse_args()
    results = {"args": vars(args), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with tempfile.TemporaryDirectory() as tmp:
        if args.scenario in ("limits", "all"):
            results["limits"] = bench_limits(args, Path(tmp))
        if args.scenario in ("verify", "all"):
            results["verify"] = bench_verify(args, Path(tmp))
    out = ROOT / "bench/results" / f"{args.scenario}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
