"""What the LLM gateway adds to a call: the same local upstream called directly, through a bare Flask
proxy and through /llm/v1, in one run.

    .venv/bin/python bench/gateway.py                     # 3 alternating wrk runs of 10 s per path and
                                                          # load, then 200 streams per path: about 6 min
    .venv/bin/python bench/gateway.py --runs 5 --streams 500

The upstream is tests/upstream.py's OpenAI-compatible server, started in a process of its own (so
that neither the measuring client nor wrk shares its interpreter). It is a stdlib
ThreadingHTTPServer: one Python process, one GIL, a thread per connection. Every path is limited
by it (the direct path by it alone), and wrk, the gateway, the upstream, PostgreSQL and Redis share
this machine's cores, so the throughput ratio says how much of this upstream's throughput the
gateway leaves on this machine; it is not the gateway's own ceiling. The cores each process used
during each run are recorded, to show which one was the bottleneck of each path. In that
process the upstream keeps no record of the requests it gets (it only counts them: a benchmark
sends hundreds of thousands), listens with a backlog of 128 instead of 5, so that a burst of new
connections is not dropped and retried a second later, and sets TCP_NODELAY on its connections,
as production servers (and gunicorn, and tests/upstream.py) do. Without it (--upstream-nagle) a
plain answer's body is a second small write that Nagle's algorithm holds until the
client's delayed ACK: about 40 ms per call on a kept-alive connection, on every path, which hides
everything else.

Latchkey runs under gunicorn with --workers gthread workers of --threads threads (default 2 x 8;
a stream holds a worker thread for its whole length), on PostgreSQL (BENCH_DATABASE_URL, a
database of its own, created and dropped) and Redis (BENCH_REDIS_URL), with the production usage
flush interval, as bench/run.py. One provider, `local`, serves the model `local/tiny` from the
upstream (1,000 budget units per 1,000 tokens in and out). The key has the scope `llm:*` and a
monthly budget of 10^12 units that never runs out, so every gateway call runs the whole pipeline:
verification (rate limit, quota, budget on Redis, with leases) at the call's estimate, the
upstream call, and the settlement of the difference at the tokens the upstream reports (on the
worker's lease), and usage counted per model.

1. Throughput and latency of a small non-streaming chat completion (`say hello`, max_tokens 5),
   with an upstream that answers at once and then (--upstream-delay-ms, 20 by default) with one
   that takes as long as a small model call at least, with wrk at --connections connections, and
   with that slower upstream once more at one connection (one call at a time), in alternating
   runs: `direct` (POST <upstream>/v1/chat/completions, model "tiny", the upstream's key), `bare
   proxy` (the same through bench/bare_app.py's bare Flask proxy, under the same gunicorn
   settings: the least any Flask gateway costs) and `gateway` (POST <gateway>/llm/v1/chat/
   completions, model "local/tiny", the Latchkey key), each as `Authorization: Bearer`. wrk's
   script (method, body, headers) is written to a temporary file. Medians of --runs runs; the
   ratios of requests per second (gateway/direct, bare proxy/direct, gateway/bare proxy) and the
   latency added at p50 and p99 (over direct, and the gateway's over the bare proxy).
   During each run, the cores (CPU seconds per second, from /proc) used by the upstream process,
   the gateway's gunicorn (master, each worker, and their sum), redis-server (when local), wrk,
   and everything else on the machine (PostgreSQL, and any other work: a busy machine shows
   there), and CPU milliseconds per request of the upstream, the gateway and redis-server.
2. Time to first chunk of a stream: --streams sequential streamed requests of `words:--words`
   through each path (interleaved, the order alternating), with httpx from this process: the time
   from sending the request to the first `data:` event carrying content. The direct requests ask
   for `stream_options.include_usage` as the gateway does upstream, so the upstream does the same
   work on both paths. The client keeps its connection to the gateway alive; the upstream closes
   every stream's connection (tests/upstream.py), so each direct stream, and each call the gateway
   makes upstream, opens a new one.

Writes bench/results/gateway-<UTC date and time>.json: the fields of bench/run.py's records, plus
`setup`, `chat` (the wrk summary), `first_chunk` (the stream timings), `checks` (what the
upstream served, the reservations the gateway made in Redis) and the generated wrk script.
"""
import argparse
import functools
import json
import os
import resource
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

import httpx  # noqa: E402

from bench.run import (  # noqa: E402
    DATABASE_URL,
    PRODUCTION,
    RAW,
    REDIS_URL,
    THREADS,
    medians,
    recorded,
    run_wrk,
    wrk_figures,
)
from tests.helpers import Seeder, delete_keys  # noqa: E402
from tests.servers import fresh_database, gunicorn_master, run_migrations, service_env  # noqa: E402

UPSTREAM_KEY = "bench-upstream-credential-0123456789"
PROVIDERS = """
[[providers]]
name = "local"
base_url = "{url}"
api_key_env = "BENCH_LOCAL_LLM_KEY"
timeout_seconds = 30

[[providers.models]]
name = "tiny"
input_price = 1000
output_price = 1000
max_tokens = 64
"""
HELLO = [{"role": "user", "content": "say hello"}]
TICKS = os.sysconf("SC_CLK_TCK")
BUDGET = 10**12  # budget units a month: never runs out
# The upstream, in a process of its own: it prints its URL, serves until its standard input closes,
# then prints what it served (JSON).
UPSTREAM = """
import collections, json, sys, os
from http.server import ThreadingHTTPServer
from tests.upstream import Upstream, _Handler

ThreadingHTTPServer.request_queue_size = 128
_Handler.disable_nagle_algorithm = os.environ["BENCH_UPSTREAM_NAGLE"] != "1"  # TCP_NODELAY
served = collections.Counter()


def _record(self, request):
    with self._lock:
        served[request["path"]] += 1
        return sum(served.values())


Upstream._record = _record
upstream = Upstream(os.environ["BENCH_UPSTREAM_KEY"]).start()
print(upstream.url, flush=True)
sys.stdin.read()
upstream.stop()
print(json.dumps({"requests": dict(served), "completed_streams": upstream.completed_streams,
                  "disconnected_streams": upstream.disconnects}), flush=True)
"""
WRK_SCRIPT = """-- written by bench/gateway.py: POST BENCH_BODY with Authorization: Bearer BENCH_BEARER
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_BEARER")
"""


@contextmanager
def upstream_process(tmp, nagle):
    """Start the upstream in a process of its own; yield (its base URL, a dict that receives what it
    served once it has stopped)."""
    errors = open(tmp / "upstream-stderr.txt", "w")
    process = subprocess.Popen([sys.executable, "-c", UPSTREAM], cwd=ROOT, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=errors, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT), "BENCH_UPSTREAM_KEY": UPSTREAM_KEY,
                                    "BENCH_UPSTREAM_NAGLE": "1" if nagle else "0"})
    served = {"pid": process.pid}
    try:
        url = process.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"the upstream did not start: {(tmp / 'upstream-stderr.txt').read_text()}")
        yield url, served
    finally:
        try:
            out, _ = process.communicate(timeout=30)  # closes its standard input: it stops
            served.update(json.loads(out.strip().splitlines()[-1]) if out.strip() else {})
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        errors.close()
        lines = (tmp / "upstream-stderr.txt").read_text().splitlines()
        served["stderr_lines"] = len(lines)
        if lines:
            served["stderr_tail"] = lines[-20:]


def cpu_seconds(pid):
    """CPU time (user + system, all threads) of the process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def busy_seconds():
    """CPU time every process on the machine has used so far (all cores: /proc/stat without idle and iowait)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / TICKS


def cpu_during(run, processes):
    """Run `run()`; return its result and the cores (CPU seconds per second) that each group of
    `processes` ({name: pids}), wrk, and everything else on the machine used meanwhile."""
    before = {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in processes.items()}
    children, machine, started = resource.getrusage(resource.RUSAGE_CHILDREN), busy_seconds(), time.monotonic()
    result = run()
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = {name: sum(cpu_seconds(pid) for pid in pids) - before[name] for name, pids in processes.items()}
    used["wrk"] = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    used["everything else"] = max(0.0, busy_seconds() - machine - sum(used.values()))
    return result, {name: round(value / seconds, 3) for name, value in used.items()}


def wrk_post(script, url, body, bearer, seconds, connections, record):
    """Run wrk once with the generated script (POST `body` with `bearer`); return its figures as
    bench/run.py's wrk() does (rps, p50/p99 ms, non-2xx, requests, socket errors), and add the run
    to the record's wrk_runs."""
    argv = ["wrk", f"-t{min(THREADS, connections)}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s",
            str(script), url]
    env = {"BENCH_BODY": json.dumps(body), "BENCH_BEARER": bearer}
    shown = {"BENCH_BEARER": f"<{record['target']} key>", "BENCH_BODY": env["BENCH_BODY"]}
    command = (" ".join(f"{k}={shlex.quote(v)}" for k, v in shown.items()) + " "
               + shlex.join([*argv[:-2], "<generated wrk script>", url]))
    return wrk_figures(run_wrk(argv, env, command, record))


def bench_chat(args, script, targets, processes, name, connections):
    """Alternate direct, bare proxy and gateway wrk runs at `connections` connections (after a
    warm-up of each, recorded, not counted); return the medians, the throughput ratios, the latency
    added, and the cores that each of `processes` ({name: pids}: the upstream, the gateway's master
    and each worker, the bare proxy's gunicorn, redis-server), wrk and the rest of the machine used
    during each run; `gateway` is the master's and workers' sum."""
    warm_up = {label: 0 for label in targets}
    if args.warm_up:
        for label, (url, body, bearer) in targets.items():
            warm_up[label] = wrk_post(script, url, body, bearer, args.warm_up, connections,
                                      {"scenario": name, "target": label, "run": "warm-up"})["requests"]
    results = {label: [] for label in targets}
    for run in range(args.runs):
        for label, (url, body, bearer) in targets.items():
            result, cores = cpu_during(functools.partial(
                wrk_post, script, url, body, bearer, args.duration, connections,
                {"scenario": name, "target": label, "run": run + 1}), processes)
            cores["gateway"] = round(sum(v for group, v in cores.items() if group.startswith("gateway ")), 3)
            results[label].append({**result, "cores": cores})
            RAW[-1]["cores_used"] = cores
    summary = {"scenario": name}
    for label, runs in results.items():
        summary[label] = {**medians(runs), "warm_up_requests": warm_up[label],
                          "runs_p50_ms": [r["p50"] for r in runs], "runs_p99_ms": [r["p99"] for r in runs],
                          "cores_used": {group: statistics.median(r["cores"][group] for r in runs)
                                         for group in runs[0]["cores"]},
                          "cpu_ms_per_request": {group: round(statistics.median(
                              r["cores"][group] / r["rps"] * 1e3 for r in runs), 3)
                              for group in ("upstream", "gateway", "bare proxy", "redis-server")
                              if group in runs[0]["cores"]}}
    direct, bare, gateway = summary["direct"], summary["bare proxy"], summary["gateway"]
    summary["ratio"] = round(gateway["rps"] / direct["rps"], 3)
    summary["added_p50_ms"] = round(gateway["p50_ms"] - direct["p50_ms"], 3)
    summary["added_p99_ms"] = round(gateway["p99_ms"] - direct["p99_ms"], 3)
    summary["bare_proxy_ratio"] = round(bare["rps"] / direct["rps"], 3)
    summary["bare_proxy_added_p50_ms"] = round(bare["p50_ms"] - direct["p50_ms"], 3)
    summary["gateway_over_bare_proxy_p50_ms"] = round(gateway["p50_ms"] - bare["p50_ms"], 3)
    summary["gateway_to_bare_proxy_ratio"] = round(gateway["rps"] / bare["rps"], 3)
    print(f"{name}, medians of {args.runs} runs of {args.duration} s:\n"
          f"  direct  {direct['rps']:.0f} rps, p50 {direct['p50_ms']:.2f} ms, p99 {direct['p99_ms']:.2f} ms "
          f"(runs {direct['runs_rps']} rps), non-2xx {direct['non_2xx']}, socket errors {direct['socket_errors']}\n"
          f"  gateway {gateway['rps']:.0f} rps, p50 {gateway['p50_ms']:.2f} ms, p99 {gateway['p99_ms']:.2f} ms "
          f"(runs {gateway['runs_rps']} rps), non-2xx {gateway['non_2xx']}, socket errors {gateway['socket_errors']}\n"
          f"  bare    {bare['rps']:.0f} rps, p50 {bare['p50_ms']:.2f} ms, p99 {bare['p99_ms']:.2f} ms "
          f"(runs {bare['runs_rps']} rps), non-2xx {bare['non_2xx']}, socket errors {bare['socket_errors']}\n"
          f"  gateway/direct throughput {summary['ratio']}; the gateway adds {summary['added_p50_ms']:.2f} ms "
          f"at p50, {summary['added_p99_ms']:.2f} ms at p99; a bare Flask proxy adds "
          f"{summary['bare_proxy_added_p50_ms']:.2f} ms at p50 (throughput {summary['bare_proxy_ratio']}), the "
          f"gateway {summary['gateway_over_bare_proxy_p50_ms']:.2f} ms more (throughput "
          f"{summary['gateway_to_bare_proxy_ratio']} of the bare proxy's)", flush=True)
    for label in targets:
        used = summary[label]["cores_used"]
        order = ["upstream", "gateway", *(g for g in used if g.startswith("gateway ")), "bare proxy", "redis-server",
                 "wrk", "everything else"]
        cores = ", ".join(f"{group} {used[group]:.2f}" for group in order if group in used)
        per_request = ", ".join(f"{group} {value:.2f} ms"
                                for group, value in summary[label]["cpu_ms_per_request"].items())
        print(f"  cores used during the {label} runs (medians): {cores}; CPU per request: {per_request}", flush=True)
    return summary


def stream_once(client, url, headers, body, expected):
    """One streamed request: (seconds to the first data event carrying content, seconds to the end)."""
    started = time.perf_counter()
    first, text = None, []
    with client.stream("POST", url, headers=headers, json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}: {response.read()[:500]!r}")
        for line in response.iter_lines():
            if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                continue
            for choice in json.loads(line[5:]).get("choices") or ():
                content = (choice.get("delta") or {}).get("content")
                if content:
                    if first is None:
                        first = time.perf_counter() - started
                    text.append(content)
    total = time.perf_counter() - started
    if "".join(text) != expected:
        raise RuntimeError(f"{url} streamed {''.join(text)!r}, not {expected!r}")
    return first, total


def percentile(values, p):
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def bench_first_chunk(args, targets):
    """--streams sequential streams through each path, interleaved (the order alternating), after
    --streams // 20 of each not counted; return p50/p99 of the time to the first content chunk and
    of the whole stream, in ms."""
    expected = " ".join(f"w{n}" for n in range(args.words))
    timings = {label: {"first": [], "total": []} for label in targets}
    clients = {label: httpx.Client(timeout=30) for label in targets}
    try:
        warm_up = max(1, args.streams // 20)
        for number in range(warm_up + args.streams):
            order = list(targets) if number % 2 == 0 else list(reversed(targets))
            for label in order:
                url, body, bearer = targets[label]
                first, total = stream_once(clients[label], url, {"Authorization": f"Bearer {bearer}"}, body, expected)
                if number >= warm_up:
                    timings[label]["first"].append(first * 1e3)
                    timings[label]["total"].append(total * 1e3)
    finally:
        for client in clients.values():
            client.close()
    name = f"time to first chunk, {args.streams} sequential streams of {args.words} words per path"
    summary = {"scenario": name, "streams": args.streams, "words": args.words, "warm_up_streams": warm_up}
    for label, values in timings.items():
        summary[label] = {"first_chunk_p50_ms": round(statistics.median(values["first"]), 3),
                          "first_chunk_p99_ms": round(percentile(values["first"], 99), 3),
                          "stream_p50_ms": round(statistics.median(values["total"]), 3),
                          "stream_p99_ms": round(percentile(values["total"], 99), 3),
                          "first_chunk_ms": [round(v, 3) for v in values["first"]]}
    direct, bare, gateway = summary["direct"], summary["bare proxy"], summary["gateway"]
    for figure in ("first_chunk_p50_ms", "first_chunk_p99_ms", "stream_p50_ms", "stream_p99_ms"):
        summary[f"added_{figure}"] = round(gateway[figure] - direct[figure], 3)
        summary[f"bare_proxy_added_{figure}"] = round(bare[figure] - direct[figure], 3)
    print(f"{name}:\n" + "".join(
        f"  {label:<10} first chunk p50 {summary[label]['first_chunk_p50_ms']:.2f} ms, p99 "
        f"{summary[label]['first_chunk_p99_ms']:.2f} ms (whole stream p50 {summary[label]['stream_p50_ms']:.2f} ms)\n"
        for label in targets)
        + f"  the gateway adds {summary['added_first_chunk_p50_ms']:.2f} ms to the first chunk at p50, "
        f"{summary['added_first_chunk_p99_ms']:.2f} ms at p99; a bare Flask proxy "
        f"{summary['bare_proxy_added_first_chunk_p50_ms']:.2f} ms at p50", flush=True)
    return summary


def check(url, headers, body, what):
    """One plain call before measuring: it must answer the upstream's reply."""
    answer = httpx.post(url, headers=headers, json=body, timeout=30)
    if answer.status_code != 200 or answer.json()["choices"][0]["message"]["content"] != "hello from upstream":
        raise RuntimeError(f"{what} answered {answer.status_code}: {answer.text[:500]}")


def redis_process():
    """{"redis-server": [its pid]} when BENCH_REDIS_URL's server runs on this machine (its CPU is then
    counted apart), else {}."""
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL)
        pid = client.info("server")["process_id"]
        client.close()
        return {"redis-server": [pid]} if "redis" in Path(f"/proc/{pid}/comm").read_text() else {}
    except (OSError, redis.RedisError, KeyError):
        return {}


def usage_written(database_url):
    """The gateway calls the service counted (written by its workers, the last at their exit), by
    model: requests, cost, input and output tokens."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text(
                "SELECT model, sum(count), sum(cost), sum(input_tokens), sum(output_tokens) FROM key_usage "
                "WHERE model <> '' GROUP BY model")).all()
    finally:
        engine.dispose()
    return {model: {"requests": int(n), "cost": int(cost), "input_tokens": int(tokens_in),
                    "output_tokens": int(tokens_out)} for model, n, cost, tokens_in, tokens_out in rows}


def bench_gateway(args, tmp, results):
    script = tmp / "gateway-post.lua"
    script.write_text(WRK_SCRIPT)
    results["wrk_script"] = WRK_SCRIPT.splitlines()
    with (upstream_process(tmp, args.upstream_nagle) as (upstream, served),
          fresh_database(tmp, DATABASE_URL) as database_url):
        providers = tmp / "providers.toml"
        providers.write_text(PROVIDERS.format(url=upstream))
        env = service_env(database_url, REDIS_URL, **PRODUCTION, LLM_PROVIDERS_FILE=str(providers),
                          BENCH_LOCAL_LLM_KEY=UPSTREAM_KEY,
                          GUNICORN_CMD_ARGS=f"--worker-class gthread --threads {args.threads}")
        prefix = env["RATELIMIT_KEY_PREFIX"]  # unique to this run: what it leaves in Redis is deleted at the end
        run_migrations(env)
        seeder = Seeder(env)
        try:
            owner_id, _ = seeder.user("bench-gateway@example.com")
            secret = seeder.key(owner_id, scopes=["llm:*"], budget_limit=BUDGET, budget_period="month")
        finally:
            seeder.close()
        results["setup"] = {
            "gateway": f"gunicorn, {args.workers} gthread workers x {args.threads} threads, PostgreSQL + Redis, "
                       f"USAGE_FLUSH_SECONDS={PRODUCTION['USAGE_FLUSH_SECONDS']}",
            "upstream": "tests/upstream.py (stdlib ThreadingHTTPServer) in a process of its own; requests counted, "
                        "not recorded; listen backlog 128; TCP_NODELAY "
                        + ("off (Nagle's algorithm on, as in the tests)" if args.upstream_nagle else "on"),
            "providers_toml": PROVIDERS.strip().splitlines(),
            "key": {"scopes": ["llm:*"], "budget_limit": BUDGET, "budget_period": "month"},
            "wrk_threads": THREADS}
        bare_env = {**env, "BENCH_PROXY_UPSTREAM": upstream}
        try:
            with (gunicorn_master(env, workers=args.workers) as master,
                  gunicorn_master(bare_env, args.workers, "bench.bare_app:app") as bare_master):
                gateway, bare = master.base, bare_master.base
                direct_body = {"model": "tiny", "messages": HELLO, "max_tokens": 5}
                chat = {"direct": (f"{upstream}/chat/completions", direct_body, UPSTREAM_KEY),
                        "bare proxy": (f"{bare}/proxy/chat/completions", direct_body, UPSTREAM_KEY),
                        "gateway": (f"{gateway}/llm/v1/chat/completions", {"model": "local/tiny", "messages": HELLO,
                                                                            "max_tokens": 5}, secret)}
                for label, (url, body, bearer) in chat.items():
                    check(url, {"Authorization": f"Bearer {bearer}"}, body, label)
                processes = {"upstream": [served["pid"]], "gateway master": [master.pid],
                             **{f"gateway worker {n}": [pid]
                                for n, pid in enumerate(sorted(master.worker_pids()), start=1)},
                             "bare proxy": [bare_master.pid, *bare_master.worker_pids()], **redis_process()}
                results["chat"] = bench_chat(args, script, chat, processes,
                                             f"chat completion, not streamed, {args.connections} connections",
                                             args.connections)
                if args.upstream_delay_ms:
                    # An upstream that takes as long as a model does (a small completion: tens of ms at least).
                    slow = [{"role": "user", "content": f"say hello delay:{args.upstream_delay_ms / 1000}"}]
                    paced = {label: (url, {**body, "messages": slow}, bearer) for label, (url, body, bearer)
                             in chat.items()}
                    results["chat_paced"] = bench_chat(
                        args, script, paced, processes, f"chat completion, not streamed, the upstream answering "
                        f"in {args.upstream_delay_ms} ms, {args.connections} connections", args.connections)
                    results["chat_paced_one"] = bench_chat(
                        args, script, paced, processes, f"chat completion, not streamed, the upstream answering "
                        f"in {args.upstream_delay_ms} ms, one connection (one call at a time)", 1)
                prompt = [{"role": "user", "content": f"words:{args.words}"}]
                stream = {"stream": True, "stream_options": {"include_usage": True}}
                direct_stream = {"model": "tiny", "messages": prompt, **stream}
                streams = {"direct": (f"{upstream}/chat/completions", direct_stream, UPSTREAM_KEY),
                           "bare proxy": (f"{bare}/proxy/chat/completions", direct_stream, UPSTREAM_KEY),
                           "gateway": (f"{gateway}/llm/v1/chat/completions",
                                       {"model": "local/tiny", "messages": prompt, **stream}, secret)}
                results["first_chunk"] = bench_first_chunk(args, streams)
            counted = usage_written(database_url)
        finally:
            delete_keys(REDIS_URL, prefix)
    chat = results["chat"]["gateway"]
    streams_sent = results["first_chunk"]["streams"] + results["first_chunk"]["warm_up_streams"]
    paced = [results.get(scenario, {}).get("gateway", {}) for scenario in ("chat_paced", "chat_paced_one")]
    gateway_calls = (chat["requests"] + chat["warm_up_requests"] + 1 + streams_sent
                     + sum(runs.get("requests", 0) + runs.get("warm_up_requests", 0) for runs in paced))
    results["checks"] = {"upstream": dict(served), "gateway_usage_by_model": counted}
    print(f"checks: the upstream served {served.get('requests')}, streamed {served.get('completed_streams')} "
          f"to the end ({served.get('disconnected_streams')} cut short), {served.get('stderr_lines')} lines on its "
          f"stderr; gateway calls completed: {gateway_calls} (wrk's count, the check and the streams; wrk leaves "
          f"out those in flight when it stops), the gateway's calls the service counted, by model: {counted}",
          flush=True)
    print("note: both paths end at the same upstream, a stdlib ThreadingHTTPServer in one Python process (one GIL: "
          "at most one core), which bounds both; and wrk, the gateway's gunicorn, the upstream, PostgreSQL and Redis "
          f"all share this machine's {len(os.sched_getaffinity(0))} cores. The ratio is what the gateway leaves of "
          "that upstream's throughput on this machine, not the gateway's own ceiling; the cores used above show "
          "which process was the bottleneck of each path", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--warm-up", type=int, default=2,
                        help="seconds of wrk load on each path before the measured runs (recorded, not counted)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers of the gateway")
    parser.add_argument("--threads", type=int, default=8, help="threads per gthread worker")
    parser.add_argument("--upstream-delay-ms", type=int, default=20,
                        help="also measure an upstream that takes this long to answer (0: not)")
    parser.add_argument("--upstream-nagle", action="store_true",
                        help="leave Nagle's algorithm on for the upstream's connections, as tests/upstream.py does "
                             "(a plain answer's body then waits ~40 ms for the client's delayed ACK)")
    parser.add_argument("--streams", type=int, default=200, help="sequential streams measured per path")
    parser.add_argument("--words", type=int, default=20, help="words (chunks) per stream")
    args = parser.parse_args()
    if args.streams < 2:
        parser.error("--streams must be at least 2")
    with recorded("gateway", args) as results, tempfile.TemporaryDirectory() as tmp:
        results["machine"]["versions"]["httpx"] = metadata.version("httpx")
        bench_gateway(args, Path(tmp), results)


if __name__ == "__main__":
    main()
