"""When is one key's set of restrictions at least as narrow as another's?

A request made with a key may only mint, change or act on keys that it *covers*: keys that can do
no more than it can, in every dimension. Pure functions, no Flask: the API's permission helper
(`app/api/helpers/permissions.py`) is their one caller, and the property tests drive them directly.

- scopes: every scope of the narrower key is covered by one of the wider key's scopes;
- allowed IPs: no allowlist means anywhere, so a wider key with an allowlist needs the narrower
  one to have one too, made of sub-networks of its own;
- expiry: not later, and not absent when the wider key has one;
- rate limit: for every limit of the wider key (N per window W), one of the narrower key's limits
  admits at most N per a window at least W long;
- quota and budget: a limit not higher, over a period at least as long (day < month < total).
"""
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from limits import parse_many

from app.services import scopes as scope_rules

# The columns of a key that restrict what it may do (names as on the model and in KeyRecord).
COLUMNS = ("scopes", "allowed_ips", "expires_at", "rate_limit",
           "quota_limit", "quota_period", "budget_limit", "budget_period")
# Periods from the shortest to the longest; a longer period holds fewer units per unit of time.
PERIOD_ORDER = {"day": 0, "month": 1, "total": 2}


@dataclass(frozen=True)
class Restrictions:
    """What limits a key: parsed, comparable, independent of where the values came from."""

    scopes: tuple = ()
    networks: tuple = ()        # ip_network objects; empty: any address
    expires_at: datetime | None = None
    rate_limits: tuple = ()     # (amount, window seconds) pairs; empty: no limit of its own
    quota: tuple | None = None  # (limit, period)
    budget: tuple | None = None

    @classmethod
    def of(cls, values: Mapping) -> "Restrictions":
        """Return the restrictions in `values`, a mapping of COLUMNS (missing ones are unset)."""
        rate_limit = values.get("rate_limit")
        return cls(
            scopes=tuple(values.get("scopes") or ()),
            networks=tuple(ipaddress.ip_network(cidr, strict=False) for cidr in values.get("allowed_ips") or ()),
            expires_at=values.get("expires_at"),
            rate_limits=tuple((i.amount, i.get_expiry()) for i in parse_many(rate_limit)) if rate_limit else (),
            quota=_allowance(values, "quota"),
            budget=_allowance(values, "budget"),
        )


def columns_of(obj) -> dict:
    """Return the restricting column values of a key (an ApiKey or a KeyRecord)."""
    return {name: getattr(obj, name) for name in COLUMNS}


def _allowance(values, kind):
    limit = values.get(f"{kind}_limit")
    return None if limit is None else (limit, values.get(f"{kind}_period"))


def scopes_covered(wider, narrower) -> bool:
    return all(scope_rules.allows(wider, scope) for scope in narrower)


def networks_covered(wider, narrower) -> bool:
    if not wider:
        return True
    return bool(narrower) and all(
        any(net.version == outer.version and net.subnet_of(outer) for outer in wider) for net in narrower)


def expiry_covered(wider, narrower) -> bool:
    return wider is None or (narrower is not None and narrower <= wider)


def rate_limits_covered(wider, narrower) -> bool:
    return all(any(amount <= limit and window >= span for amount, window in narrower) for limit, span in wider)


def allowance_covered(wider, narrower) -> bool:
    if wider is None:
        return True
    return narrower is not None and narrower[0] <= wider[0] and PERIOD_ORDER[narrower[1]] >= PERIOD_ORDER[wider[1]]


# (attribute name in the API, test): the order in which a widening is reported.
CHECKS = (
    ("scopes", lambda w, n: scopes_covered(w.scopes, n.scopes)),
    ("allowed-ips", lambda w, n: networks_covered(w.networks, n.networks)),
    ("expires-at", lambda w, n: expiry_covered(w.expires_at, n.expires_at)),
    ("rate-limit", lambda w, n: rate_limits_covered(w.rate_limits, n.rate_limits)),
    ("quota", lambda w, n: allowance_covered(w.quota, n.quota)),
    ("budget", lambda w, n: allowance_covered(w.budget, n.budget)),
)


def first_widening(wider: Restrictions, narrower: Restrictions) -> str | None:
    """Return the API name of the first attribute in which `narrower` exceeds `wider`, or None."""
    return next((name for name, covered in CHECKS if not covered(wider, narrower)), None)


def inherit(parent: Mapping, given: Mapping) -> dict:
    """Return the columns of a key minted by a key: what `given` sets, else the parent's
    restrictions (scopes are grants, not restrictions: they are never inherited)."""
    return {name: given.get(name) if name in given or name == "scopes" else parent.get(name) for name in COLUMNS}
