"""Issue 14: what the SDK costs a protected service, as a ratio against the same endpoint unprotected.

    .venv/bin/python bench/sdk.py                  # 3 alternating runs of 10 s each: about 2 min
    .venv/bin/python bench/sdk.py --runs 5 --duration 10

Latchkey runs under gunicorn (PostgreSQL: BENCH_DATABASE_URL, Redis: BENCH_REDIS_URL, as bench/run.py),
with one key (llm:*) and a service key (keys:verify). The example service (examples/protected_service.py)
runs under gunicorn with the same settings as every benchmark target (sync workers, WEB_CONCURRENCY=
--workers), configured from LATCHKEY_* variables. wrk loads, in alternating runs, its unprotected
`GET /v1/hello-public` ("bare" in the record) and `GET /v1/hello` behind `@require_key("llm:chat")`
with the key in X-API-Key ("latchkey"), once every worker's cache holds the key's signed answer: a
worker asks Latchkey again once per --cache-ttl (or the token's lifetime, if shorter).

Then, in this process: microseconds per `Latchkey.verify` of a cached signed answer (the check each
request makes: digest, lookup, token expiry, audience, issuer and signing key), with
`recheck_signature=True` (the Ed25519 signature recomputed each use), and per `check_token` (a token
checked offline from scratch): timeit, median of --repeats runs.

Writes bench/results/sdk-<UTC date and time>.json (the fields of bench/run.py's records, plus
`in_process`).
"""
import argparse
import statistics
import sys
import tempfile
import timeit
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import DATABASE_URL, PRODUCTION, REDIS_URL, compare, recorded, seed  # noqa: E402
from tests.servers import fresh_database, gunicorn, run_migrations, service_env  # noqa: E402

SCOPES = ("llm:chat",)
CLIENT_IP = "203.0.113.7"


def warm(base, secret, workers):
    """Ask the protected endpoint until every worker has cached the key's answer (each worker asks
    Latchkey once, then answers from its cache), and at least 20 times per worker; return the
    number of requests sent."""
    misses = sent = 0
    while (misses < workers or sent < 20 * workers) and sent < 500 * workers:
        answer = requests.get(f"{base}/v1/hello", headers={"X-API-Key": secret}, timeout=10)
        sent += 1
        if answer.status_code != 200:
            raise RuntimeError(f"the protected endpoint refuses the benchmark's key: {answer.text}")
        misses += answer.json()["data"]["source"] == "latchkey"
    if misses < workers:
        raise RuntimeError(f"only {misses} of {workers} workers asked Latchkey in {sent} requests")
    return sent


def microseconds(call, number, repeats):
    runs = [timeit.timeit(call, number=number) / number * 1e6 for _ in range(repeats)]
    return {"median_us": round(statistics.median(runs), 2), "runs_us": [round(run, 2) for run in runs],
            "number": number}


def in_process(base, service, secret, repeats):
    """Microseconds per check of a cached signed answer, with the signature recomputed, and of a
    token checked offline."""
    from latchkey_client import Latchkey

    figures = {}
    with Latchkey(base, service, cache_ttl=300) as client:
        first = client.verify(secret, SCOPES, ip=CLIENT_IP)
        if not first.valid:
            raise RuntimeError(f"the benchmark's key is refused: {first.code}")
        figures["signed"] = first.token is not None
        if client.verify(secret, SCOPES, ip=CLIENT_IP).source != "cache":
            raise RuntimeError("the answer was not cached")
        figures["cached_check"] = microseconds(lambda: client.verify(secret, SCOPES, ip=CLIENT_IP), 20_000, repeats)
        if first.token:
            figures["check_token"] = microseconds(lambda: client.check_token(first.token), 2_000, repeats)
    with Latchkey(base, service, cache_ttl=300, recheck_signature=True) as client:
        client.verify(secret, SCOPES, ip=CLIENT_IP)
        figures["cached_check_recheck_signature"] = microseconds(
            lambda: client.verify(secret, SCOPES, ip=CLIENT_IP), 2_000, repeats)
    print("in process, per check: cached signed answer {cached_check[median_us]} us; with the signature "
          "recomputed {cached_check_recheck_signature[median_us]} us; check_token {token} us".format(
              **figures, token=figures.get("check_token", {}).get("median_us")), flush=True)
    return figures


def bench_sdk(args, tmp):
    with fresh_database(tmp, DATABASE_URL) as database_url:
        env = service_env(database_url, REDIS_URL, **PRODUCTION)
        run_migrations(env)
        keys_file = tmp / "keys.txt"
        _, _, service = seed(env, keys_file, 1)
        secret = keys_file.read_text().split()[0]
        with gunicorn(env, args.workers) as latchkey:
            protected_env = {**env, "LATCHKEY_URL": latchkey, "LATCHKEY_SERVICE_KEY": service,
                             "LATCHKEY_CACHE_TTL": str(args.cache_ttl)}
            with gunicorn(protected_env, args.workers, "examples.protected_service:create_app()") as protected:
                warmed = warm(protected, secret, args.workers)
                summary = compare("GET behind @require_key (warm cache) / the same endpoint unprotected",
                                  (f"{protected}/v1/hello-public", {}),
                                  (f"{protected}/v1/hello", {"BENCH_AUTH": secret}), args)
                summary.update(warm_up_requests=warmed, cache_ttl=args.cache_ttl,
                               targets={"bare": "/v1/hello-public (unprotected)",
                                        "latchkey": "/v1/hello (@require_key('llm:chat'))"})
            figures = in_process(latchkey, service, secret, args.repeats)
    return summary, figures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--cache-ttl", type=float, default=60.0, help="the protected service's LATCHKEY_CACHE_TTL")
    parser.add_argument("--repeats", type=int, default=7, help="timeit runs of each in-process figure")
    args = parser.parse_args()
    with recorded("sdk", args) as results, tempfile.TemporaryDirectory() as tmp:
        results["sdk"], results["in_process"] = bench_sdk(args, Path(tmp))


if __name__ == "__main__":
    main()
