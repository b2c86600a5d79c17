"""Leases on Redis counters: two RedisCounters play two workers against one Redis.

Skipped unless RATELIMIT_STORAGE_URI (or REDIS_URL) is a redis:// URL, as in `.ci/run`'s second pass.
"""
import random
import uuid

import pytest
from limits.storage import storage_from_string

from app.services.admission import Allowance, Bucket, Charge
from app.services.redis_counters import LEASE_REQUESTS, LEASE_SHARE, WINDOW_MARGIN, RedisCounters
from tests.servers import redis_url_or_none

pytestmark = pytest.mark.skipif(redis_url_or_none() is None, reason="needs RATELIMIT_STORAGE_URI=redis://...")


class Worker:
    """One worker's counters, counting its round trips to Redis."""

    def __init__(self, storage):
        self.counters = RedisCounters(storage)
        self.round_trips = 0
        run_admit = self.counters._run_admit

        def counted(names, args):
            self.round_trips += 1
            return run_admit(names, args)

        self.counters._run_admit = counted

    def spend(self, name, amount, limit):
        """Charge `amount` to the allowance counter `name` (no expiry)."""
        charge = Charge(Allowance("budget", 1, limit, "total"), name, amount, 0)
        return self.counters.admit([charge]).admitted

    def hit(self, bucket, limit, window):
        """Count one request in the rate-limit bucket `bucket` (prefixed by the storage)."""
        return self.counters.admit([Charge(Bucket(bucket, limit, window), bucket, 1, window)]).admitted


@pytest.fixture
def storage():
    storage = storage_from_string(redis_url_or_none())
    yield storage
    storage.get_connection().close()


@pytest.fixture
def name(storage):
    """A counter's name: as an allowance counter, or (prefixed by the storage) a bucket's."""
    name = f"lktest-lease-{uuid.uuid4().hex}"
    yield name
    storage.get_connection().delete(name, f"{name}:leases", storage.prefixed_key(name))


def counter(storage, name):
    return int(storage.get_connection().get(name) or 0)


def test_near_a_limit_nothing_is_leased_and_every_admission_is_exact(storage, name):
    a, b = Worker(storage), Worker(storage)
    limit = LEASE_SHARE - 1
    admitted = sum((a if n % 2 else b).spend(name, 1, limit) for n in range(limit + 20))
    assert admitted == limit and counter(storage, name) == limit
    assert a.round_trips + b.round_trips == limit + 20


def test_far_from_a_limit_a_worker_admits_from_its_lease(storage, name):
    a = Worker(storage)
    assert a.spend(name, 2, 10**6)
    lease = LEASE_REQUESTS * 2
    assert counter(storage, name) == 2 + lease  # the lease counts as spent for everyone else
    assert all(a.spend(name, 2, 10**6) for _ in range(LEASE_REQUESTS)) and a.round_trips == 1
    assert a.spend(name, 2, 10**6) and a.round_trips == 2
    a.counters.give_back()
    assert counter(storage, name) == 2 * (LEASE_REQUESTS + 2)


def test_a_lease_is_at_most_a_hundredth_of_what_is_left(storage, name):
    a = Worker(storage)
    assert a.spend(name, 1, 5_001)
    assert counter(storage, name) == 1 + 5_000 // LEASE_SHARE


def test_workers_never_admit_more_than_the_limit_and_give_back_what_they_did_not_use(storage, name):
    workers, limit, rng = [Worker(storage), Worker(storage), Worker(storage)], 20_000, random.Random(7)
    admitted = 0
    for _ in range(6_000):
        cost = rng.randint(1, 9)
        if rng.choice(workers).spend(name, cost, limit):
            admitted += cost
    assert limit - 3 * 9 < admitted <= limit
    assert sum(worker.round_trips for worker in workers) < 6_000 / 2  # most admissions were local
    for worker in workers:
        worker.counters.give_back()
    assert counter(storage, name) == admitted


def test_a_reset_still_counts_what_leases_may_admit(storage, name):
    a, b = Worker(storage), Worker(storage)
    limit = 10_000
    assert a.spend(name, 1, limit)  # a now holds a lease of 99
    a.counters.clear(name)  # an admin starts the window over
    admitted = sum(worker.spend(name, 1, limit) for worker in [a, b] * limit)
    assert admitted == limit  # a's lease is drained, b was refused at the limit
    assert counter(storage, name) == limit


def test_a_changed_limit_voids_the_lease(storage, name):
    a = Worker(storage)
    assert a.spend(name, 1, 10**6)
    assert a.spend(name, 1, 100) and a.round_trips == 2  # the lease went back, nothing new leased
    assert counter(storage, name) == 2


def test_a_bucket_lease_lapses_with_its_window(storage, name, timeline):
    """A bucket lease lapses WINDOW_MARGIN before its window ends in Redis (the lapse is on the
    fake clock; the bucket's TTL in Redis runs on real time, so the window is long enough that it
    never ends during the test)."""
    window = 60
    a = Worker(storage)
    assert a.hit(name, 10**6, window) and a.round_trips == 1
    timeline.advance(window - WINDOW_MARGIN - 0.05)
    assert a.hit(name, 10**6, window) and a.round_trips == 1  # from the lease, 50 ms before it lapses
    timeline.advance(0.1)  # it lapsed 50 ms ago: it is neither used nor given back into the window
    assert a.hit(name, 10**6, window) and a.round_trips == 2
    assert counter(storage, storage.prefixed_key(name)) == 2 * (1 + LEASE_REQUESTS)


# The admission script's own connection (one per thread, outside the client's pool).

def held_connection(worker):
    return worker.counters._local.held[1]


def test_an_admission_connection_that_died_while_idle_is_replaced_and_the_admission_counted_once(storage, name):
    a = Worker(storage)
    assert a.spend(name, 1, LEASE_SHARE - 1)  # near the limit: every admission is a round trip
    dead = held_connection(a)
    dead.send_command("CLIENT", "ID")
    storage.get_connection().client_kill_filter(_id=dead.read_response())  # Redis closes it (a restart...)
    assert a.spend(name, 1, LEASE_SHARE - 1)
    assert held_connection(a) is dead and dead._sock is not None  # reconnected once, the admission made on it
    assert counter(storage, name) == 2


def test_an_admission_cut_half_way_leaves_no_reply_for_the_next_one_and_is_not_asked_twice(storage, name, monkeypatch):
    """A reply that did not come in time (the socket timeout) must not answer the next admission on
    that connection: the connection is closed; and a timeout is not retried (a hung Redis would
    cost twice the wait)."""
    from redis.exceptions import TimeoutError as RedisTimeoutError

    a = Worker(storage)
    assert a.spend(name, 1, LEASE_SHARE - 1)
    connection = held_connection(a)
    sent = []
    real_send = connection.send_command
    monkeypatch.setattr(connection, "send_command", lambda *args: sent.append(args) or real_send(*args))
    monkeypatch.setattr(connection, "read_response", lambda: (_ for _ in ()).throw(RedisTimeoutError("timed out")))
    with pytest.raises(RedisTimeoutError):
        a.spend(name, 1, LEASE_SHARE - 1)
    assert len(sent) == 1 and connection._sock is None  # not retried; closed with the unread reply
    monkeypatch.undo()
    assert counter(storage, name) == 2  # Redis did count the cut admission (the safe side)
    assert a.spend(name, 1, LEASE_SHARE - 1) and counter(storage, name) == 3  # its own reply, not the old one


def test_scripts_lost_by_redis_are_loaded_again(storage, name):
    a = Worker(storage)
    assert a.spend(name, 1, LEASE_SHARE - 1)
    storage.get_connection().script_flush()  # as after a restart
    assert a.spend(name, 1, LEASE_SHARE - 1) and counter(storage, name) == 2


def test_a_forked_worker_makes_its_own_admission_connection(storage, name, monkeypatch):
    from app.services import redis_counters

    a = Worker(storage)
    assert a.spend(name, 1, LEASE_SHARE - 1)
    parent = held_connection(a)
    real_pid = redis_counters.os.getpid()
    monkeypatch.setattr(redis_counters.os, "getpid", lambda: real_pid + 1)  # as if forked
    assert a.spend(name, 1, LEASE_SHARE - 1)
    assert held_connection(a) is not parent and counter(storage, name) == 2


def test_a_difference_settled_after_an_admission_goes_to_the_lease_while_it_fits_else_to_redis(storage, name):
    """adjust (the LLM gateway's settlements): a worker's lease takes differences without a round
    trip, never growing past what was leased; beyond that, Redis; what is spent stays exact."""
    a = Worker(storage)
    assert a.spend(name, 2, 10**6) and counter(storage, name) == 2 + 2 * LEASE_REQUESTS
    assert a.spend(name, 2, 10**6) and a.round_trips == 1  # from the lease
    lease = a.counters._own_leases()[name]
    a.counters.adjust(name, -2)  # the second call cost nothing after all: back into the lease
    assert lease.units == lease.granted and counter(storage, name) == 2 + 2 * LEASE_REQUESTS
    a.counters.adjust(name, -2)  # the first one neither: more than the lease was given, so Redis
    assert counter(storage, name) == 2 * LEASE_REQUESTS
    a.counters.adjust(name, 3)  # a later call cost 3 more than admitted: taken from the lease
    assert lease.units == lease.granted - 3
    a.counters.give_back()
    assert counter(storage, name) == 3  # 2 + 2 - 2 - 2 + 3


def test_a_difference_is_not_added_to_a_counter_that_no_longer_exists(storage, name):
    RedisCounters(storage).adjust(name, 5)
    assert storage.get_connection().exists(name) == 0
