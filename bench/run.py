"""Benchmarks, always as ratios against a bare Flask JSON endpoint measured in the same run.

    .venv/bin/python bench/run.py limits    # issue 4: a rate-limited endpoint with an API key, memory:// and Redis
    .venv/bin/python bench/run.py verify    # issue 5: POST /v1/api-keys/verify at 1,000 and 1,000,000 keys,
                                            # hot (100 keys, cached) and cold (no key repeats: a database read each)

Both targets run under gunicorn with the same settings (sync workers, WEB_CONCURRENCY=--workers);
wrk loads them from this machine, alternating bare / Latchkey runs; medians of --runs runs.
Needs wrk (Debian package), PostgreSQL (BENCH_DATABASE_URL, default the local `test` server; the
benchmark works in a database of its own, created and dropped) and Redis (BENCH_REDIS_URL).

Every invocation writes bench/results/<scenario>-<UTC date and time>.json: the command line, the
machine (cores, CPU, memory, load), the versions (Python, Flask, gunicorn, wrk, PostgreSQL, Redis,
the commit), the summaries printed here, and the raw output of every wrk run. See
bench/results/README.md.
"""
import argparse
import json
import os
import platform
import random
import re
import secrets
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from tests.servers import fresh_database, gunicorn, run_migrations, service_env  # noqa: E402

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
PRODUCTION = {"USAGE_FLUSH_SECONDS": "2"}  # service_env is set up for tests; measure the defaults
THREADS = 2  # wrk threads
DIGEST_INDEX = "uq_api_keys_digest"  # one scan per key lookup (app/services/key_cache.py _load)
RAW = []  # every wrk run: what was run and its stdout, for the results file


def redact(url):
    return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", url)


def wrk(url, seconds, connections, env, record):
    """Run wrk once; return its figures: rps, p50/p99 ms, non-2xx, requests, and per thread the keys
    handed out (post.lua's done())."""
    argv = ["wrk", f"-t{THREADS}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", "bench/post.lua", url]
    env = {**env, "BENCH_THREADS": str(THREADS)}
    shown = {k: ("<service key>" if k == "BENCH_AUTH" else Path(v).name if k == "BENCH_KEYS" else v)
             for k, v in sorted(env.items())}
    command = " ".join(f"{k}={shlex.quote(v)}" for k, v in shown.items()) + " " + shlex.join(argv)
    output = run_wrk(argv, env, command, record)
    return {**wrk_figures(output), "threads": [{k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
                                               for line in re.findall(r"^bench-keys .*$", output, re.M)]}


def run_wrk(argv, env, command, record) -> str:
    """Run wrk (`argv`, with `env` added to the environment), add it to the record's wrk runs as
    `command` (secrets left out) with its output, and return the output."""
    run = subprocess.run(argv, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True)
    RAW.append({**record, "command": command,
                "stdout": run.stdout.splitlines(), **({"stderr": run.stderr.splitlines()} if run.stderr else {})})
    if run.returncode != 0:
        raise RuntimeError(f"wrk failed: {run.stdout}{run.stderr}")
    return run.stdout


def wrk_figures(output: str) -> dict:
    """The figures of a wrk run's output: rps, p50/p99 ms, non-2xx, requests, socket errors."""
    percentiles = {p: float(v) * UNITS[u] for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)", output, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
            "p50": percentiles["50"], "p99": percentiles["99"], "non_2xx": int(errors.group(1)) if errors else 0,
            "requests": int(re.search(r"(\d+) requests in", output).group(1)),
            "socket_errors": sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)",
                                                          "".join(re.findall(r"Socket errors:.*", output))))}


def medians(runs) -> dict:
    """The summary of wrk runs of one target: medians of rps and latencies, sums of the counts."""
    return {"rps": statistics.median(r["rps"] for r in runs),
            "p50_ms": statistics.median(r["p50"] for r in runs),
            "p99_ms": statistics.median(r["p99"] for r in runs),
            "non_2xx": sum(r["non_2xx"] for r in runs),
            "socket_errors": sum(r["socket_errors"] for r in runs),
            "requests": sum(r["requests"] for r in runs),
            "runs_rps": [round(r["rps"]) for r in runs]}


def compare(name, bare, latchkey, args, walk=False):
    """Alternate bare and Latchkey runs; return medians and the throughput ratio. With `walk` (the
    cold load), each Latchkey run starts in the keys file where the previous one stopped, and the
    summary counts the keys handed out and how many of them were distinct."""
    results = {"bare": [], "latchkey": []}
    start, covered, wrapped = 0, set(), False
    for run in range(args.runs):
        for label, (url, env) in (("bare", bare), ("latchkey", latchkey)):
            if walk and label == "latchkey":
                env = {**env, "BENCH_KEYS_START": str(start)}
            result = wrk(url, args.duration, args.connections, env, {"scenario": name, "target": label, "run": run + 1})
            results[label].append(result)
            if walk and label == "latchkey":
                for thread in result["threads"]:
                    def position(k, thread=thread, start=start):
                        return thread["thread"] + THREADS * ((start + k) % thread["stride"])

                    covered.update(position(k) for k in range(thread["sent"]))
                    wrapped |= start + thread["sent"] > thread["stride"]
                start += max(thread["sent"] for thread in result["threads"])
    summary = {"scenario": name, **{label: medians(runs) for label, runs in results.items()}}
    summary["ratio"] = round(summary["latchkey"]["rps"] / summary["bare"]["rps"], 3)
    line = (f"{name}: bare {summary['bare']['rps']:.0f} rps, latchkey {summary['latchkey']['rps']:.0f} rps, "
            f"ratio {summary['ratio']}, latchkey p50 {summary['latchkey']['p50_ms']:.2f} ms "
            f"p99 {summary['latchkey']['p99_ms']:.2f} ms (bare p50 {summary['bare']['p50_ms']:.2f} "
            f"p99 {summary['bare']['p99_ms']:.2f}), non-2xx {summary['latchkey']['non_2xx']}")
    if walk:
        summary["cold"] = {"keys_sent": sum(t["sent"] for r in results["latchkey"] for t in r["threads"]),
                           "distinct_keys": len(covered), "wrapped": wrapped}
        line += (f"; {summary['cold']['keys_sent']} keys sent, {summary['cold']['distinct_keys']} distinct"
                 + (" (WRAPPED: keys repeated, raise --cold-keys)" if wrapped else ""))
    print(line, flush=True)
    return summary


def app_for(env):
    from app import create_app
    from config import TestingConfig

    return create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=env["DATABASE_URL"], DATABASE_STATEMENT_TIMEOUT_MS=0,
                      RATELIMIT_STORAGE_URI=env["RATELIMIT_STORAGE_URI"])


def seed(env, keys_file, real_keys, **key_attributes):
    """Create a service key (keys:verify) and `real_keys` keys to verify; write those secrets to keys_file."""
    from app.extensions import db
    from app.models import ApiKey, User
    from app.services import lifecycle

    app = app_for(env)
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
        secrets_ = [new_key(scopes=["llm:*"], **key_attributes) for _ in range(real_keys)]
        db.session.commit()
        owner_id = owner.id
        db.engine.dispose()
    Path(keys_file).write_text("\n".join(secrets_) + "\n")
    return app, owner_id, service


def add_cold_keys(app, owner_id, keys_file, count, limits):
    """Insert `count` real keys named 'bench-cold' (same scopes and limits as the hot ones) and write
    their secrets to keys_file, shuffled (so that walking the file does not walk the table in
    insertion order, which would keep reading the same heap pages); return one more such key, not
    in the file, to check the setup before measuring. Secrets are made as key_format.generate_key
    makes them (190 random bits in base62, then a CRC32), digests with hash_secret; rows go in with
    COPY."""
    from app.extensions import db
    from app.services import key_format

    prefix = app.config["API_KEY_PREFIX"]
    top = 62 ** key_format.RANDOM_LENGTH
    started = time.monotonic()
    made = []
    for _ in range(count + 1):
        body = key_format._base62(secrets.randbelow(top), key_format.RANDOM_LENGTH)
        made.append(f"{prefix}_{body}{key_format._checksum(body)}")
    probe = made.pop()
    assert key_format.is_well_formed(probe, prefix)
    with app.app_context():
        raw = db.engine.raw_connection()
        try:
            connection = raw.driver_connection
            with connection.cursor() as cursor:
                cursor.execute("CREATE TEMPORARY TABLE bench_cold (digest text, start text, last4 text)")
                with cursor.copy("COPY bench_cold (digest, start, last4) FROM STDIN") as copy:
                    for secret in made + [probe]:
                        copy.write_row((key_format.hash_secret(secret),
                                        secret[:len(prefix) + 1 + key_format.START_LENGTH], secret[-4:]))
                cursor.execute(
                    "INSERT INTO api_keys (user_id, name, digest, start, last4, scopes, status, created_at, "
                    "updated_at, allowed_ips, metadata, tags, version, rate_limit, budget_limit, budget_period) "
                    "SELECT %s, 'bench-cold', digest, start, last4, '[\"llm:*\"]', 'active', now(), now(), '[]', "
                    "'{}', '[]', 1, CAST(%s AS varchar), CAST(%s AS bigint), CAST(%s AS varchar) FROM bench_cold",
                    (owner_id, limits.get("rate_limit"), limits.get("budget_limit"), limits.get("budget_period")))
                cursor.execute("UPDATE api_keys SET name = 'bench-cold-probe' WHERE digest = %s",
                               (key_format.hash_secret(probe),))
                cursor.execute("DROP TABLE bench_cold")
            connection.commit()
        finally:
            raw.close()
        db.engine.dispose()
    random.shuffle(made)
    Path(keys_file).write_text("\n".join(made) + "\n")
    print(f"{count} cold keys inserted in {time.monotonic() - started:.0f} s", flush=True)
    return probe


def fill_keys(app, owner_id, total):
    """Top the table up to `total` keys with generated digests (PostgreSQL: one INSERT ... SELECT)."""
    from app.extensions import db

    started = time.monotonic()
    with app.app_context():
        have = db.session.scalar(text("SELECT count(*) FROM api_keys"))
        db.session.execute(text(
            "INSERT INTO api_keys (user_id, name, digest, start, last4, scopes, status, created_at, updated_at, "
            "allowed_ips, metadata, tags, version) "
            "SELECT :owner, 'bulk', encode(sha256(('bulk-' || g)::bytea), 'hex'), "
            "'lk_bulk00', 'bulk', '[]', 'active', now(), now(), '[]', '{}', '[]', 1 "
            "FROM generate_series(CAST(:start AS bigint), CAST(:end AS bigint)) AS g"),
            {"owner": owner_id, "start": have + 1, "end": total})
        db.session.commit()
        # Vacuum now, so that autovacuum does not wake up for the new rows during the measurement.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE api_keys"))
        count = db.session.scalar(text("SELECT count(*) FROM api_keys"))
        db.engine.dispose()
    print(f"{count} keys in the table ({time.monotonic() - started:.0f} s to fill and vacuum)", flush=True)
    return count


def digest_lookups(database_url):
    """Index scans of api_keys.digest so far: one per key lookup. Backends report their statistics
    when they exit, so read this after the server that made the lookups has stopped."""
    time.sleep(1.5)  # its PostgreSQL backends exit (and flush their statistics) after gunicorn does
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return connection.scalar(text("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = :name"),
                                     {"name": DIGEST_INDEX}) or 0
    finally:
        engine.dispose()


def cold_usage(database_url):
    """What the servers counted for the cold keys (written at every flush and at exit): verifications
    per outcome and distinct keys verified."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text(
                "SELECT u.outcome, sum(u.count), count(DISTINCT u.key_id) FROM key_usage u "
                "JOIN api_keys k ON k.id = u.key_id WHERE k.name = 'bench-cold' GROUP BY u.outcome")).all()
            keys = connection.scalar(text(
                "SELECT count(DISTINCT u.key_id) FROM key_usage u JOIN api_keys k ON k.id = u.key_id "
                "WHERE k.name = 'bench-cold'"))
    finally:
        engine.dispose()
    return {"verifications_by_outcome": {outcome: int(total) for outcome, total, _ in rows}, "distinct_keys": keys}


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
    """Issue 5: POST /v1/api-keys/verify on PostgreSQL + Redis, at 1,000 then 1,000,000 keys; at
    1,000,000 keys also cold: every request carries a key that no worker has cached."""
    import requests

    summaries = []
    keys_file, cold_file = tmp / "keys.txt", tmp / "cold-keys.txt"
    label = "keys without limits" if args.plain_keys else "keys with a rate limit and a budget"
    with fresh_database(tmp, DATABASE_URL) as database_url:
        env = service_env(database_url, REDIS_URL, **PRODUCTION)
        run_migrations(env)
        limits = {} if args.plain_keys else dict(rate_limit="100000000/minute", budget_limit=10**12,
                                                 budget_period="month")
        app, owner_id, service = seed(env, keys_file, args.hot_keys, **limits)
        post = {"BENCH_METHOD": "POST", "BENCH_KEYS": str(keys_file)}
        with gunicorn(env, args.workers, "bench.bare_app:app") as bare:
            for total in (1000, args.keys):
                if total == args.keys and args.cold_keys:
                    probe = add_cold_keys(app, owner_id, cold_file, args.cold_keys, limits)
                count = fill_keys(app, owner_id, total)
                before = digest_lookups(database_url)
                with gunicorn(env, args.workers) as latchkey:
                    summary = compare(f"verify, {count} {label}, {args.hot_keys} hot keys", (f"{bare}/json", post),
                                      (f"{latchkey}/v1/api-keys/verify", {**post, "BENCH_AUTH": service}), args)
                summary.update(keys=count, hot_keys=args.hot_keys, db_lookups=digest_lookups(database_url) - before)
                summaries.append(summary)
            if args.cold_keys:
                cold = {"BENCH_METHOD": "POST", "BENCH_KEYS": str(cold_file), "BENCH_WALK": "1"}
                before = digest_lookups(database_url)
                with gunicorn(env, args.workers) as latchkey:
                    answer = requests.post(f"{latchkey}/v1/api-keys/verify", headers={"X-API-Key": service},
                                           json={"key": probe, "scopes": ["llm:gpt-4o"], "ip": "203.0.113.7"}).json()
                    if answer["meta"]["code"] != "VALID":
                        raise RuntimeError(f"a cold key does not verify: {answer}")
                    summary = compare(f"verify, {count} {label}, cold lookups", (f"{bare}/json", cold),
                                      (f"{latchkey}/v1/api-keys/verify", {**cold, "BENCH_AUTH": service}), args,
                                      walk=True)
                summary.update(keys=count, db_lookups=digest_lookups(database_url) - before)
                summary["cold"].update(keys_in_file=args.cold_keys, counted_by_servers=cold_usage(database_url))
                counted = summary["cold"]["counted_by_servers"]
                print(f"cold: {summary['latchkey']['requests']} responses, {summary['cold']['keys_sent']} keys sent, "
                      f"{summary['cold']['distinct_keys']} distinct; servers counted "
                      f"{counted['verifications_by_outcome']} over {counted['distinct_keys']} distinct keys; "
                      f"{summary['db_lookups']} key lookups in PostgreSQL", flush=True)
                summaries.append(summary)
                summaries += mixed_loads(args, env, bare, service, cold_file, tmp, post, count, label)
    small, large = summaries[:2]
    print(f"verify throughput at {large['keys']} keys / at {small['keys']} keys (hot): "
          f"{large['latchkey']['rps'] / small['latchkey']['rps']:.3f}")
    return summaries


def mixed_loads(args, env, bare, service, cold_file, tmp, post, count, label):
    """Issue 16: `--mixed-keys` real keys (the first lines of the cold keys file, which the cold
    load has walked past) asked at random, uniformly (every key in turn: more distinct keys than a
    worker's cache holds cycle through it), then by a Zipf law of exponent `--zipf` (a few hot keys,
    a long tail). A fresh service for each, loaded for `--warm-up` seconds before the measured runs
    (recorded, not counted): a service runs for days, and what a worker's cache holds of these keys
    after ten seconds is what it holds after a day, where a fresh one holds nothing."""
    if not args.mixed_keys:
        return []
    mixed_file = tmp / "mixed-keys.txt"
    with open(cold_file) as source:
        mixed_file.write_text("".join(line for _, line in zip(range(args.mixed_keys), source, strict=False)))
    summaries = []
    for name, extra in ((f"{args.mixed_keys} keys at random", {}),
                        (f"{args.mixed_keys} keys by a Zipf law (s={args.zipf})", {"BENCH_ZIPF": str(args.zipf)})):
        load = {**post, "BENCH_KEYS": str(mixed_file), **extra}
        with gunicorn(env, args.workers) as latchkey:
            target = (f"{latchkey}/v1/api-keys/verify", {**load, "BENCH_AUTH": service})
            if args.warm_up:
                wrk(target[0], args.warm_up, args.connections, target[1],
                    {"scenario": f"verify, {count} {label}, {name}", "target": "latchkey", "run": "warm-up"})
            summary = compare(f"verify, {count} {label}, {name}", (f"{bare}/json", load), target, args)
        summary.update(keys=count, mixed_keys=args.mixed_keys, zipf=extra.get("BENCH_ZIPF"), warm_up_s=args.warm_up)
        summaries.append(summary)
    return summaries


def command_output(argv):
    try:
        return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def machine_facts():
    """The machine and the versions the figures were measured with."""
    def first(path, pattern):
        try:
            match = re.search(pattern, Path(path).read_text(), re.M)
            return match.group(1).strip() if match else None
        except OSError:
            return None

    versions = {}
    for package in ("flask", "werkzeug", "gunicorn", "sqlalchemy", "psycopg", "redis", "flask-limiter", "limits"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    versions["wrk"] = ((command_output(["wrk", "-v"]) or "").splitlines() or [None])[0]
    engine = create_engine(DATABASE_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as connection:
            versions["postgresql"] = connection.scalar(text("SHOW server_version"))
    except Exception as exc:  # noqa: BLE001 -- a fact we could not get is recorded as such
        versions["postgresql"] = f"unknown ({type(exc).__name__})"
    finally:
        engine.dispose()
    try:
        import redis

        versions["redis-server"] = redis.Redis.from_url(REDIS_URL).info("server")["redis_version"]
    except Exception as exc:  # noqa: BLE001
        versions["redis-server"] = f"unknown ({type(exc).__name__})"
    status = command_output(["git", "status", "--porcelain", "--untracked-files=no"])
    return {
        "nproc": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(),
        "cpu": first("/proc/cpuinfo", r"^model name\s*:(.*)$"),
        "memory": first("/proc/meminfo", r"^MemTotal:(.*)$"),
        "kernel": platform.release(), "os": first("/etc/os-release", r'^PRETTY_NAME="?([^"\n]*)'),
        "python": platform.python_version(), "versions": versions,
        "commit": command_output(["git", "rev-parse", "HEAD"]), "uncommitted_changes": bool(status),
        "database": redact(DATABASE_URL), "redis": redact(REDIS_URL),
    }


@contextmanager
def recorded(name, args):
    """Yield the record of a benchmark (command, machine, versions, load), for the caller to add its
    summaries to; then write it, with wrk's raw output of every run, to
    bench/results/<name>-<UTC date and time>.json (-FAILED when the benchmark raised)."""
    started = time.gmtime()
    results = {"command": shlex.join(sys.orig_argv), "cwd": str(Path.cwd()),
               "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", started), "args": vars(args),
               "machine": machine_facts(), "load_average_before": os.getloadavg()}
    failed = True
    try:
        yield results
        failed = False
    finally:
        results.update(finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       load_average_after=os.getloadavg(), wrk_runs=RAW)
        if failed:
            results["failed"] = True
        stamp = time.strftime("%Y-%m-%dT%H%M%SZ", started)
        out = ROOT / "bench/results" / f"{name}-{stamp}{'-FAILED' if failed else ''}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"written to {out.relative_to(ROOT)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=["limits", "verify", "all"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--hot-keys", type=int, default=100,
                        help="distinct keys the hot verify load picks from at random")
    parser.add_argument("--cold-keys", type=int, default=500_000,
                        help="real keys (part of --keys) the cold verify load walks through without repeating; "
                             "0: no cold scenario")
    parser.add_argument("--mixed-keys", type=int, default=100_000,
                        help="real keys the mixed verify loads pick from (uniformly, then by a Zipf law); 0: none")
    parser.add_argument("--zipf", type=float, default=1.0, help="the Zipf exponent of the mixed load")
    parser.add_argument("--warm-up", type=int, default=10,
                        help="seconds of the mixed loads sent to a fresh service before measuring it (0: none)")
    parser.add_argument("--plain-keys", action="store_true",
                        help="verified keys carry no rate limit or budget (no Redis round trip)")
    args = parser.parse_args()
    if args.cold_keys and args.cold_keys + max(1000, args.hot_keys + 1) + 1 > args.keys:
        parser.error("--cold-keys must leave room for the 1,000 keys of the first verify scenario within --keys")
    if args.mixed_keys > args.cold_keys:
        parser.error("--mixed-keys are taken from the cold keys: at most --cold-keys")
    name = args.scenario + ("-plain-keys" if args.plain_keys and args.scenario != "limits" else "")
    with recorded(name, args) as results, tempfile.TemporaryDirectory() as tmp:
        if args.scenario in ("limits", "all"):
            results["limits"] = bench_limits(args, Path(tmp))
        if args.scenario in ("verify", "all"):
            results["verify"] = bench_verify(args, Path(tmp))


if __name__ == "__main__":
    main()
