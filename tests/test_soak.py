"""Soak (issue 10): about a minute of mixed load on 4 gunicorn workers with two graceful reloads.

Verifications of many keys (every outcome: valid, insufficient scopes, rate-limited, quota and budget
exceeded, suspended, revoked), key mutations through the API meanwhile (create, revoke, suspend,
reactivate, rotate, delete) and two SIGHUPs to the master. Afterwards:
- every revoked key is refused on every worker, through verification and the API alike;
- once the service has stopped, the usage table holds exactly the answers given, by key and
  outcome, with their cost: nothing lost on reloads, on the final stop, to deadlocks between the
  workers' flushes or to keys deleted mid-flush (whose usage goes with them).

Skipped unless RATELIMIT_STORAGE_URI is redis://, like tests/test_processes.py: it runs in CI's
second pass.
"""
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select

from app.extensions import db
from app.models import ApiKey, KeyUsage
from tests.helpers import Seeder, delete_keys
from tests.servers import fresh_database, gunicorn_master, redis_url_or_none, run_migrations, service_env

pytestmark = pytest.mark.skipif(redis_url_or_none() is None, reason="needs RATELIMIT_STORAGE_URI=redis://...")

SOAK_SECONDS = 40  # of load; with start, reloads and checks the test takes about a minute
JSONAPI = {"Content-Type": "application/vnd.api+json"}
SCOPES = ["llm:*", "keys:read"]  # verified for llm:..., and each key reads itself through the API


class Pool:
    """The keys under load: id -> current secret, and which ids were ever handed out."""

    def __init__(self):
        self.lock = threading.Lock()
        self.secrets = {}

    def put(self, key_id, secret):
        with self.lock:
            self.secrets[key_id] = secret

    def pick(self, rng):
        with self.lock:
            key_id = rng.choice(list(self.secrets))
            return key_id, self.secrets[key_id]

    def ids(self):
        with self.lock:
            return list(self.secrets)


class Soak:
    def __init__(self, base, verifier, owner_token, pool):
        self.base, self.pool = base, pool
        self.verifier = {"X-API-Key": verifier}
        self.owner = {"Authorization": f"Bearer {owner_token}"}
        self.lock = threading.Lock()
        self.answers, self.cost = Counter(), Counter()  # (key id, code) -> answers; key id -> admitted cost
        self.errors, self.mutations, self.server_errors = [], Counter(), []
        self.stopping = threading.Event()

    def record(self, key_id, code, cost=0):
        with self.lock:
            self.answers[(key_id, code)] += 1
            if code == "VALID":
                self.cost[key_id] += cost

    def verify_loop(self, seed):
        rng, session = random.Random(seed), requests.Session()
        while not self.stopping.is_set():
            key_id, secret = self.pool.pick(rng)
            scopes = ["llm:gpt-4o"] if rng.random() < 0.85 else ["rag:search"]
            cost = rng.randint(0, 3)
            try:
                answer = session.post(f"{self.base}/v1/api-keys/verify", json={"key": secret, "scopes": scopes,
                                      "cost": cost}, headers=self.verifier, timeout=30).json()
                self.record(key_id, answer["meta"]["code"], cost)
            except Exception as exc:  # no answer: whether it was counted is unknown
                with self.lock:
                    self.errors.append(f"verify: {exc!r}")

    def api_loop(self, seed):
        """Requests made with the keys themselves (every one is counted in the key's usage too)."""
        rng, session = random.Random(seed), requests.Session()
        while not self.stopping.is_set():
            key_id, secret = self.pool.pick(rng)
            try:
                response = session.get(f"{self.base}/v1/api-keys/{key_id}", headers={"X-API-Key": secret},
                                       timeout=30)
            except Exception as exc:
                with self.lock:
                    self.errors.append(f"api: {exc!r}")
                continue
            if response.status_code == 200:
                self.record(key_id, "VALID")
            else:
                code = response.json()["errors"][0].get("code")
                if response.status_code >= 500:
                    self.server_errors.append((response.status_code, code))
                self.record(key_id, code)
            time.sleep(0.02)

    def mutate_loop(self, seed):
        rng, session = random.Random(seed), requests.Session()
        actions = ["create", "create", "revoke", "suspend", "reactivate", "rotate", "delete"]
        while not self.stopping.wait(0.25):
            action = rng.choice(actions)
            key_id, _ = self.pool.pick(rng)
            try:
                if action == "create":
                    response = session.post(f"{self.base}/v1/api-keys", headers={**self.owner, **JSONAPI}, json={
                        "data": {"type": "api-keys", "attributes": {"name": "soak", "scopes": SCOPES}}},
                        timeout=30)
                    if response.status_code == 201:
                        data = response.json()["data"]
                        self.pool.put(int(data["id"]), data["attributes"]["secret"])
                elif action == "rotate":
                    response = session.post(f"{self.base}/v1/api-keys/{key_id}/rotate", headers=self.owner,
                                            timeout=30)
                    if response.status_code == 201:
                        self.pool.put(key_id, response.json()["data"]["attributes"]["secret"])
                elif action == "delete":
                    response = session.delete(f"{self.base}/v1/api-keys/{key_id}", headers=self.owner, timeout=30)
                else:
                    response = session.post(f"{self.base}/v1/api-keys/{key_id}/{action}", headers=self.owner,
                                            timeout=30)
            except Exception as exc:  # the database says afterwards what happened to the key
                with self.lock:
                    self.errors.append(f"mutation: {exc!r}")
                continue
            with self.lock:
                self.mutations[(action, response.status_code)] += 1
                if response.status_code >= 500:
                    self.server_errors.append((action, response.status_code, response.text[:200]))

    def run(self, threads):
        workers = [threading.Thread(target=self.verify_loop, args=(i,), daemon=True) for i in range(threads)]
        workers.append(threading.Thread(target=self.api_loop, args=(100,), daemon=True))
        workers.append(threading.Thread(target=self.mutate_loop, args=(200,), daemon=True))
        for worker in workers:
            worker.start()
        return workers

    def stop(self, workers):
        self.stopping.set()
        for worker in workers:
            worker.join(60)


def test_soak_mixed_load_with_two_graceful_reloads(tmp_path):
    log_path = tmp_path / "gunicorn.log"
    with fresh_database(tmp_path) as database_url:
        env = service_env(database_url, redis_url_or_none(), RATE_LIMIT_DEFAULTS="1000000 per minute",
                          USAGE_FLUSH_SECONDS="0.05", GUNICORN_LOG=str(log_path))
        run_migrations(env)
        seeder = Seeder(env)
        try:
            service_id, _ = seeder.user("soak-service@example.com", admin=True)
            verifier = seeder.key(service_id, scopes=["keys:verify"])
            owner_id, owner_token = seeder.user("soak-owner@example.com")
            pool = Pool()
            kinds = [{}, {}, {}, {"rate_limit": "10/minute"}, {"quota_limit": 10, "quota_period": "day"},
                     {"budget_limit": 15, "budget_period": "day"}, {"status": "suspended"}, {"status": "revoked"}]
            for i in range(32):
                secret = seeder.key(owner_id, scopes=SCOPES, **kinds[i % len(kinds)])
                pool.put(seeder.key_id(secret), secret)

            started = time.monotonic()
            with gunicorn_master(env, workers=4) as master:
                soak = Soak(master.base, verifier, owner_token, pool)
                threads = soak.run(threads=6)
                generations = [master.worker_pids()]
                try:
                    for _ in range(2):
                        time.sleep(SOAK_SECONDS / 3)
                        generations.append(master.reload(workers=4))
                    time.sleep(max(0.0, SOAK_SECONDS - (time.monotonic() - started)))
                finally:
                    soak.stop(threads)
                assert not generations[0] & generations[1] and not generations[1] & generations[2]

                # Every revoked key is refused on every worker (4 workers, 16 concurrent requests each).
                time.sleep(1.1)  # KEY_CACHE_SECONDS
                with seeder.app.app_context():
                    states = dict(db.session.execute(select(ApiKey.id, ApiKey.status)).all())
                revoked = [key_id for key_id in pool.ids() if states.get(key_id) == "revoked"]
                assert revoked, "the soak revoked keys"
                refused = Counter()
                with ThreadPoolExecutor(16) as executor:
                    for key_id in revoked:
                        secret = pool.secrets[key_id]
                        verifications = list(executor.map(lambda _, secret=secret: requests.post(
                            f"{master.base}/v1/api-keys/verify", json={"key": secret}, headers=soak.verifier,
                            timeout=30).json()["meta"]["code"], range(16)))
                        calls = list(executor.map(lambda _, key_id=key_id, secret=secret: requests.get(
                            f"{master.base}/v1/api-keys/{key_id}", headers={"X-API-Key": secret}, timeout=30),
                            range(8)))
                        for code in verifications:
                            soak.record(key_id, code)
                            refused[("verify", code)] += 1
                        for response in calls:
                            code = response.json()["errors"][0].get("code") if response.status_code >= 400 else None
                            soak.record(key_id, code or "VALID")
                            refused[("api", response.status_code, code)] += 1
                assert refused == {("verify", "REVOKED"): 16 * len(revoked), ("api", 401, "REVOKED"): 8 * len(revoked)}
            elapsed = time.monotonic() - started
            # The service has stopped (SIGTERM): every worker has exited, so everything must be written.

            assert soak.errors == [] and soak.server_errors == []
            with seeder.app.app_context():
                remaining = set(db.session.scalars(select(ApiKey.id)))
                rows = db.session.execute(
                    select(KeyUsage.key_id, KeyUsage.outcome, func.sum(KeyUsage.count), func.sum(KeyUsage.cost))
                    .group_by(KeyUsage.key_id, KeyUsage.outcome)).all()
            deleted = set(pool.ids()) - remaining
            assert deleted and soak.mutations[("create", 201)] and soak.mutations[("rotate", 201)]
            written = {(k, o): (int(n), int(c)) for k, o, n, c in rows}
            assert not {k for k, _ in written} & deleted  # a deleted key's usage went with it
            expected = {(k, code): (n, soak.cost[k] if code == "VALID" else 0)
                        for (k, code), n in soak.answers.items() if k in remaining and code != "NOT_FOUND"}
            outcomes = Counter(code for (_, code) in expected)
            assert {"VALID", "INSUFFICIENT_SCOPES", "REVOKED", "SUSPENDED", "RATE_LIMITED", "QUOTA_EXCEEDED",
                    "BUDGET_EXCEEDED"} <= set(outcomes)
            assert sum(n for n, _ in expected.values()) > 500
            missing = {k: (v, written.get(k)) for k, v in expected.items() if written.get(k) != v}
            extra = {k: v for k, v in written.items() if k not in expected}
            assert not missing and not extra, (missing, extra)
            log = log_path.read_text()
            assert "usage lost" not in log and "dropped" not in log
            assert elapsed < 120
        finally:
            seeder.close()
            delete_keys(env["RATELIMIT_STORAGE_URI"], env["RATELIMIT_KEY_PREFIX"])  # the service has stopped
