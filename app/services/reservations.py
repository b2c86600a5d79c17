"""Reservations: charge an estimated cost now, settle the actual cost later.

A service that learns what a call cost only after it (an LLM answer's tokens) verifies the key with
`"reserve": true` and its estimate as `cost`. The estimate is admitted like any cost, on the same
counters and leases (allowances.admit_key): never beyond a budget, on any number of workers. The
valid answer then carries a reservation, which the service settles with the actual cost (lower:
the difference goes back to the budget; higher: the excess is added, even past the budget, since
it was spent; recorded either way) or releases (the whole estimate goes back).

- Settling and releasing are idempotent: the same settlement again answers as the first one did
  and changes nothing; a different one (another cost, or a release after a settlement) is refused
  with 409, as is anything after expiry.
- A reservation neither settled nor released within RESERVATION_TTL_SECONDS expires and stays
  charged at its estimate: the service may have spent it and died before settling, and giving the
  estimate back would let a crashing caller spend past its budget. The estimate is the bound the
  caller itself set.
- Only the caller that reserved (the same verifying key, or the same admin) may settle or release:
  to anyone else the reservation does not exist (404).
- Usage analytics count the estimate at verification and the difference at settlement, in the
  reservation's hour, so an hour's cost is what was settled.

On Redis a reservation is a hash (`<prefix>latchkey:reservation:<id>`, kept a day past its expiry
so that a late settlement gets 409 rather than 404) and one Lua script settles it and adjusts the
budget counter atomically. On memory:// (one process) the same, under a lock.
"""
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from app.extensions import state
from app.services import usage
from app.services.redis_counters import RedisCounters

KEPT_AFTER_EXPIRY = 86_400  # seconds a reservation stays readable after it expired
SETTLED, RELEASED, EXPIRED, MISSING = "settled", "released", "expired", "missing"

# KEYS[1]: the reservation. ARGV: its lifetime in Redis (seconds), then its fields and values.
_RESERVE = """
redis.call('hset', KEYS[1], unpack(ARGV, 2))
redis.call('expire', KEYS[1], ARGV[1])
"""
# KEYS[1]: the reservation. ARGV: the action (settled / released), the final cost, now (epoch s),
# the caller. Returns {state, final cost, estimate, 1 when this call settled it, key id, hour, model}.
_SETTLE = """
local r = redis.call('hmget', KEYS[1], 'caller', 'estimate', 'state', 'cost', 'expires', 'counter', 'key', 'hour',
                     'model')
if not r[1] or r[1] ~= ARGV[4] then return {'missing', '0', '0', 0} end
if r[3] ~= 'open' then return {r[3], r[4], r[2], 0} end
if tonumber(r[5]) <= tonumber(ARGV[3]) then return {'expired', r[2], r[2], 0} end
local delta = tonumber(ARGV[2]) - tonumber(r[2])
if r[6] ~= '' and delta ~= 0 and redis.call('exists', r[6]) == 1 then redis.call('incrby', r[6], delta) end
redis.call('hset', KEYS[1], 'state', ARGV[1], 'cost', ARGV[2])
return {ARGV[1], ARGV[2], r[2], 1, r[7], r[8], r[9]}
"""


@dataclass(frozen=True)
class Reservation:
    id: str
    key_id: int
    estimate: int
    expires_at: float  # epoch seconds

    def document(self) -> dict:
        return {"id": self.id, "estimate": self.estimate,
                "expires-at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(self.expires_at))}


@dataclass(frozen=True)
class Settlement:
    """What a settle or release found: the reservation's state after it, its final cost (the
    estimate when it expired), its estimate, and whether this call did it."""

    state: str
    cost: int
    estimate: int
    applied: bool


class Reservations:
    def __init__(self, counters, ttl: float):
        self.ttl = ttl
        self._counters = counters  # allowances' counters: their storage and namespace
        self._redis = counters.client if isinstance(counters, RedisCounters) else None
        if self._redis is not None:
            self._reserve = self._redis.register_script(_RESERVE)
            self._settle = self._redis.register_script(_SETTLE)
        self._memory: OrderedDict[str, dict] = OrderedDict()  # one TTL: insertion order is expiry order
        self._lock = threading.Lock()

    def _name(self, reservation_id: str) -> str:
        return f"{self._counters.namespace}latchkey:reservation:{reservation_id}"

    def reserve(self, key_id: int, estimate: int, counter: str | None, hour, caller: str,
                model: str = "") -> Reservation:
        """Record a reservation of `estimate` (already admitted on the budget counter `counter`,
        None without a budget) for `caller`, counted in usage under `model` ("": not an LLM call).
        Raises RedisError when Redis cannot be reached."""
        reservation = Reservation(f"rsv_{secrets.token_urlsafe(18)}", key_id, estimate, time.time() + self.ttl)
        fields = {"caller": caller, "key": key_id, "estimate": estimate, "state": "open", "cost": estimate,
                  "expires": f"{reservation.expires_at:.3f}", "counter": counter or "", "hour": hour.isoformat(),
                  "model": model}
        if self._redis is not None:
            self._reserve(keys=[self._name(reservation.id)],
                          args=[int(self.ttl) + KEPT_AFTER_EXPIRY, *(v for item in fields.items() for v in item)])
        else:
            with self._lock:
                self._forget_old()
                self._memory[reservation.id] = fields
        return reservation

    def finish(self, reservation_id: str, caller: str, cost: int | None) -> tuple[Settlement, dict | None]:
        """Settle at `cost`, or release (cost None); return the Settlement and, when this call
        settled it, the reservation's fields (key, hour) for usage."""
        action, final = (RELEASED, 0) if cost is None else (SETTLED, cost)
        if self._redis is not None:
            reply = self._settle(keys=[self._name(reservation_id)], args=[action, final, time.time(), caller])
            found = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
            settlement = Settlement(found, int(reply[1]), int(reply[2]), bool(reply[3]))
            if not settlement.applied:
                return settlement, None
            return settlement, {"key": int(reply[4]), "hour": _text(reply[5]), "model": _text(reply[6])}
        with self._lock:
            fields = self._memory.get(reservation_id)
            if fields is None or fields["caller"] != caller:
                return Settlement(MISSING, 0, 0, False), None
            estimate = fields["estimate"]
            if fields["state"] != "open":
                return Settlement(fields["state"], fields["cost"], estimate, False), None
            if float(fields["expires"]) <= time.time():
                return Settlement(EXPIRED, estimate, estimate, False), None
            if fields["counter"] and final != estimate:
                self._counters.adjust(fields["counter"], final - estimate)
            fields.update(state=action, cost=final)
            return Settlement(action, final, estimate, True), fields



    def _forget_old(self):
        """Drop what expired more than KEPT_AFTER_EXPIRY ago: the oldest first, so each insert pays
        only for what it drops."""
        now = time.time()
        while self._memory:
            oldest = next(iter(self._memory.values()))
            if float(oldest["expires"]) + KEPT_AFTER_EXPIRY >= now:
                break
            self._memory.popitem(last=False)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def init_app(app):
    if app.config["RESERVATION_TTL_SECONDS"] <= 0:
        raise RuntimeError(f"RESERVATION_TTL_SECONDS={app.config['RESERVATION_TTL_SECONDS']} must be a positive "
                           "number of seconds.")
    app.extensions["latchkey_reservations"] = Reservations(
        app.extensions["latchkey_counters"], app.config["RESERVATION_TTL_SECONDS"])


def reservations() -> Reservations:
    return state("latchkey_reservations")


def count_difference(fields: dict, settlement: Settlement, tokens=(0, 0)):
    """Usage: the settled cost replaces the estimate counted at verification, in its hour, with the
    (input, output) `tokens` of an LLM call."""
    difference = settlement.cost - settlement.estimate
    if difference or any(tokens):
        usage.buffer().add_cost(int(fields["key"]), "VALID", difference, datetime.fromisoformat(fields["hour"]),
                                fields["model"], tokens)
