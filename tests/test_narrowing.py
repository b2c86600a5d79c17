"""Property tests of app/services/narrowing.py: "covered" must mean "can do nothing the wider key cannot".

Each dimension is checked against a model of what a key admits, written here independently of the
module, in the terms the rest of the app enforces them:
- scopes: the concrete scopes a key allows (scopes.allows), over every concrete scope of 1 to 5
  segments from an alphabet with one segment ("c") that no generated pattern names;
- allowed IPs: the addresses a key admits, as KeyRecord.allows_address (no allowlist: any address);
- expiry: the instants at which a key is unexpired, as KeyRecord.status_at (expired once
  `expires_at <= now`);
- rate limit: a limit "M per V" admits at most M requests in any span of V seconds (the reading the
  module documents), so at most M * ceil(W / V) in a span of W seconds;
- quota and budget: at most `limit` units per UTC calendar day, UTC calendar month, or ever; a
  day lies inside one month, so a daily allowance adds up to 31 x its limit over a month.

Whenever `first_widening(parent, child) is None`, the child admits nothing the parent does not (the
property the API's permission checks rely on). The converse is checked where the documented rule
is exact, and the documented conservative cases (refused although harmless) are pinned as such.

Hypothesis runs derandomized and without its example database: the same examples on every run,
and nothing written to the work tree.
"""
import dataclasses
import ipaddress
import itertools
import math
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from app.services import scopes as scope_rules
from app.services.narrowing import (
    COLUMNS,
    Restrictions,
    allowance_covered,
    columns_of,
    expiry_covered,
    first_widening,
    inherit,
    networks_covered,
    rate_limits_covered,
    scopes_covered,
)

PROPERTY = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
ORDER = ("scopes", "allowed-ips", "expires-at", "rate-limit", "quota", "budget")
INF = math.inf


def widening(parent: dict, child: dict):
    """first_widening over column mappings, as the API calls it."""
    return first_widening(Restrictions.of(parent), Restrictions.of(child))


# --- scopes ----------------------------------------------------------------------------------------

PATTERN_SEGMENTS = ("a", "b", "*")
FRESH = "fresh"  # a segment no pattern names: it stands for every other segment

patterns = st.lists(st.sampled_from(PATTERN_SEGMENTS), min_size=2, max_size=4).map(":".join)
scope_lists = st.lists(patterns, max_size=4, unique=True)


def concrete_scopes(*scope_lists_):
    """Every concrete scope of the segments the patterns name and FRESH, one segment longer than
    the longest pattern at most (to reach past a trailing '*')."""
    patterns_ = [pattern.split(":") for scopes in scope_lists_ for pattern in scopes or ()]
    alphabet = sorted({segment for pattern in patterns_ for segment in pattern if segment != "*"} | {FRESH})
    longest = max((len(pattern) for pattern in patterns_), default=1) + 1
    return [":".join(parts) for size in range(1, longest + 1) for parts in itertools.product(alphabet, repeat=size)]


def scopes_semantically_covered(parent, child):
    """Every concrete scope the child allows, the parent allows."""
    return all(scope_rules.allows(parent or (), wanted)
               for wanted in concrete_scopes(parent, child) if scope_rules.allows(child or (), wanted))


@PROPERTY
@given(parent=scope_lists, child=scope_lists)
def test_scopes_covered_exactly_when_the_child_allows_nothing_more(parent, child):
    # Exact both ways: a child pattern no parent pattern covers allows the same pattern with FRESH
    # for each "*", which no parent pattern without a "*" there allows.
    covered = widening({"scopes": parent}, {"scopes": child}) is None
    assert covered == scopes_semantically_covered(parent, child)
    assert covered == scopes_covered(parent, child)


@PROPERTY
@given(parent=scope_lists, data=st.data())
def test_a_subset_of_the_parents_scopes_is_covered(parent, data):
    child = data.draw(st.lists(st.sampled_from(parent), unique=True) if parent else st.just([]))
    assert widening({"scopes": parent}, {"scopes": child}) is None


@pytest.mark.parametrize("parent, child, covered", [
    (["llm:*"], ["llm:openai:gpt-4o"], True),
    (["llm:*"], ["llm:*:*"], True),
    (["llm:*:*"], ["llm:*"], False),  # llm:gpt-4o
    (["a:*:c"], ["a:b:c"], True),
    (["a:*:c"], ["a:*"], False),
    (["*:*"], ["keys:read", "llm:*"], True),
    (["keys:read"], ["keys:*"], False),
    (["keys:read"], ["keys:read:x"], False),
    (["keys:read:x"], ["keys:read"], False),
    ([], ["keys:read"], False),
    ([], [], True),
    (["keys:read", "keys:write"], ["keys:write"], True),
])
def test_scope_examples(parent, child, covered):
    assert (widening({"scopes": parent}, {"scopes": child}) is None) == covered
    assert scopes_semantically_covered(parent, child) == covered


# --- allowed IPs -----------------------------------------------------------------------------------

def _address(version, value):
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


@st.composite
def cidrs(draw, near=()):
    """A CIDR string, its host bits maybe set (stored as given; parsed with strict=False). With
    `near` (networks), often a subnet, a supernet or a sibling of one of them."""
    if near and draw(st.booleans()):
        base = draw(st.sampled_from(near))
        version, bits = base.version, base.max_prefixlen
        how = draw(st.sampled_from(("subnet", "supernet", "sibling", "same")))
        prefix = {"subnet": lambda: draw(st.integers(base.prefixlen, bits)),
                  "supernet": lambda: draw(st.integers(0, base.prefixlen))}.get(how, lambda: base.prefixlen)()
        address = int(base.network_address) + draw(st.integers(0, 2 ** (bits - base.prefixlen) - 1))
        if how == "sibling" and prefix > 0:
            address ^= 1 << (bits - prefix)
    else:
        version = draw(st.sampled_from((4, 6)))
        bits = 32 if version == 4 else 128
        prefix = draw(st.integers(0, bits))
        address = draw(st.integers(0, 2 ** bits - 1))
    return f"{_address(version, address)}/{prefix}"


allowlists = st.one_of(st.none(), st.just([]), st.lists(cidrs(), min_size=1, max_size=3))


@st.composite
def allowlist_pairs(draw, parent_size=(1, 3)):
    parent = draw(st.one_of(st.none(), st.lists(cidrs(), min_size=parent_size[0], max_size=parent_size[1])))
    near = tuple(_nets(parent))
    child = draw(st.one_of(st.none(), st.just([]), st.lists(cidrs(near), min_size=1, max_size=3)))
    return parent, child


def _nets(allowlist):
    return [ipaddress.ip_network(cidr, strict=False) for cidr in allowlist or ()]


def admits(allowlist, address):
    """As KeyRecord.allows_address: no allowlist admits any address."""
    nets = _nets(allowlist)
    return not nets or any(address in net for net in nets)


def _blocks(allowlist, version):
    return list(ipaddress.collapse_addresses(net for net in _nets(allowlist) if net.version == version))


def ips_semantically_covered(parent, child):
    """Every address the child admits, the parent admits (exact, through merged networks)."""
    if not _nets(parent):
        return True
    if not _nets(child):
        return all(any(block.prefixlen == 0 for block in _blocks(parent, version)) for version in (4, 6))
    return all(any(net.subnet_of(block) for block in _blocks(parent, net.version)) for net in _nets(child))


def _edges(net):
    """The first and last address of `net`, and those just outside it."""
    first, last = int(net.network_address), int(net.broadcast_address)
    top = 2 ** net.max_prefixlen - 1
    return [_address(net.version, value) for value in (first, last, first - 1, last + 1) if 0 <= value <= top]


def witnesses(parent, child):
    """Addresses the child admits and the parent does not, among every one that could be the first
    such address: the edges of the child's networks (of the whole spaces without an allowlist) and
    of the parent's merged networks."""
    spaces = _nets(child) or [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
    candidates = [address for net in spaces for address in _edges(net)]
    candidates += [address for version in (4, 6) for block in _blocks(parent, version) for address in _edges(block)]
    return [address for address in candidates if admits(child, address) and not admits(parent, address)]


@PROPERTY
@given(pair=allowlist_pairs(), samples=st.lists(st.tuples(st.sampled_from((4, 6)), st.integers(0, 2 ** 128 - 1)),
                                                max_size=5))
def test_covered_allowlists_admit_no_address_the_parent_refuses(pair, samples):
    parent, child = pair
    if widening({"allowed_ips": parent}, {"allowed_ips": child}) is not None:
        return
    assert ips_semantically_covered(parent, child)
    assert not witnesses(parent, child)
    addresses = [_address(version, value % 2 ** (32 if version == 4 else 128)) for version, value in samples]
    addresses += [address for net in _nets(child) for address in _edges(net)]
    for address in addresses:
        assert not admits(child, address) or admits(parent, address), address


@PROPERTY
@given(pair=allowlist_pairs())
def test_refused_allowlists_admit_an_address_the_parent_refuses_unless_only_merged_networks_cover_it(pair):
    parent, child = pair
    refused = widening({"allowed_ips": parent}, {"allowed_ips": child}) == "allowed-ips"
    assert refused == (not networks_covered(tuple(_nets(parent)), tuple(_nets(child))))
    if not ips_semantically_covered(parent, child):
        assert refused and witnesses(parent, child)
    elif refused:  # documented conservative cases: "sub-networks of its own", one network each
        assert not witnesses(parent, child)
        if _nets(child):  # some network is inside merged parent networks, not inside any one of them
            assert any(not any(net.subnet_of(own) for own in _nets(parent) if own.version == net.version)
                       for net in _nets(child))
        else:  # no allowlist: the parent's admits every address there is
            assert {block.prefixlen for version in (4, 6) for block in _blocks(parent, version)} == {0}


@PROPERTY
@given(pair=allowlist_pairs(parent_size=(1, 1)))
def test_with_one_parent_network_a_refusal_always_has_a_witness(pair):
    parent, child = pair
    assume(parent is not None)
    refused = widening({"allowed_ips": parent}, {"allowed_ips": child}) == "allowed-ips"
    assert refused == bool(witnesses(parent, child))


@pytest.mark.parametrize("parent, child, verdict", [
    (None, ["10.0.0.0/8"], None),
    ([], ["10.0.0.0/8"], None),
    (["10.0.0.0/8"], None, "allowed-ips"),
    (["10.0.0.0/8"], [], "allowed-ips"),
    (["10.0.0.0/8"], ["10.1.2.3"], None),
    (["10.0.0.0/8"], ["10.1.2.3/8"], None),  # host bits are ignored, as on the model
    (["10.0.0.0/8"], ["10.0.0.0/7"], "allowed-ips"),
    (["10.0.0.0/8"], ["10.1.0.0/16", "11.0.0.1"], "allowed-ips"),
    (["10.0.0.0/8", "2001:db8::/32"], ["2001:db8:1::/48", "10.9.0.0/16"], None),
    (["2001:db8::/32"], ["10.0.0.0/8"], "allowed-ips"),
    (["0.0.0.0/0"], ["::1"], "allowed-ips"),
    # Documented conservative cases: covered only by merged networks, or by every address there is.
    (["10.0.0.0/9", "10.128.0.0/9"], ["10.0.0.0/8"], "allowed-ips"),
    (["0.0.0.0/0", "::/0"], None, "allowed-ips"),
])
def test_allowlist_examples(parent, child, verdict):
    assert widening({"allowed_ips": parent}, {"allowed_ips": child}) == verdict


# --- expiry ----------------------------------------------------------------------------------------

NOW = datetime(2031, 5, 17, 12, 0, tzinfo=UTC)
MICRO = timedelta(microseconds=1)
expiries = st.one_of(st.none(),
                     st.integers(-3, 3).map(lambda s: NOW + timedelta(seconds=s)),
                     st.integers(-2, 2).map(lambda us: NOW + us * MICRO),
                     st.integers(-10 ** 12, 10 ** 12).map(lambda us: NOW + us * MICRO))


def unexpired(expires_at, instant):
    """As KeyRecord.status_at: a key is expired once `expires_at <= now`."""
    return expires_at is None or instant < expires_at


def instants(*expiries_):
    found = {NOW - timedelta(days=3650), NOW + timedelta(days=3650)}
    found.update(e + step * MICRO for e in expiries_ if e is not None for step in (-1, 0, 1))
    return found


@PROPERTY
@given(parent=expiries, child=expiries)
def test_expiry_covered_exactly_when_the_child_is_never_live_while_the_parent_is_expired(parent, child):
    covered = widening({"expires_at": parent}, {"expires_at": child}) is None
    assert covered == all(unexpired(parent, t) for t in instants(parent, child) if unexpired(child, t))
    assert covered == expiry_covered(parent, child)


@pytest.mark.parametrize("parent, child, verdict", [
    (None, None, None),
    (None, NOW, None),
    (NOW, None, "expires-at"),
    (NOW, NOW, None),
    (NOW, NOW - MICRO, None),
    (NOW, NOW + MICRO, "expires-at"),
])
def test_expiry_examples(parent, child, verdict):
    assert widening({"expires_at": parent}, {"expires_at": child}) == verdict


# --- rate limits -----------------------------------------------------------------------------------

UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
limit_items = st.tuples(st.integers(1, 30), st.integers(1, 3), st.sampled_from(tuple(UNITS)))
rate_limit_lists = st.one_of(st.none(), st.lists(limit_items, min_size=1, max_size=3))


def notation(items):
    """flask-limiter notation: "10/minute;100/2 hours"."""
    if items is None:
        return None
    return ";".join(f"{amount}/{unit}" if times == 1 else f"{amount}/{times} {unit}s" for amount, times, unit in items)


def limits_of(items):
    """(amount, window in seconds) pairs, computed here rather than through the `limits` library."""
    return [(amount, times * UNITS[unit]) for amount, times, unit in items or ()]


def most_in_span(items, span):
    """At most how many requests `items` admit in `span` seconds: each limit M per V admits M in
    any V seconds, so M * ceil(span / V) in `span`; no limit at all admits any number."""
    return min((amount * math.ceil(span / window) for amount, window in limits_of(items)), default=INF)


@st.composite
def rate_limit_pairs(draw):
    parent = draw(rate_limit_lists)
    if parent and draw(st.booleans()):  # derived from the parent: maybe lower, maybe longer
        child = [(max(1, amount - draw(st.integers(-1, 2))), times * draw(st.sampled_from((1, 1, 2))), unit)
                 for amount, times, unit in draw(st.lists(st.sampled_from(parent), min_size=1, max_size=3))]
    else:
        child = draw(rate_limit_lists)
    return parent, child


@PROPERTY
@given(pair=rate_limit_pairs())
def test_covered_rate_limits_admit_no_more_in_any_window_of_the_parents(pair):
    parent, child = pair
    covered = widening({"rate_limit": notation(parent)}, {"rate_limit": notation(child)}) is None
    assert covered == rate_limits_covered(tuple(limits_of(parent)), tuple(limits_of(child)))
    if covered:
        for amount, window in limits_of(parent):
            assert most_in_span(child, window) <= amount, (amount, window)


@PROPERTY
@given(parent=st.lists(limit_items, min_size=1, max_size=3),
       child=st.one_of(st.none(), st.lists(st.tuples(st.integers(1, 30), st.integers(1, 3)), min_size=1, max_size=3)))
def test_with_windows_no_shorter_a_refused_child_can_burst_past_a_parent_limit(parent, child):
    """When every child window is at least as long as every parent window (or the child has no
    limit), the rule is exact: refused exactly when one burst the child admits (its smallest amount
    at once) exceeds some parent limit."""
    longest_unit = max(parent, key=lambda item: item[1] * UNITS[item[2]])
    times, unit = longest_unit[1], longest_unit[2]
    child_items = None if child is None else [(amount, times * factor, unit) for amount, factor in child]
    refused = widening({"rate_limit": notation(parent)}, {"rate_limit": notation(child_items)}) == "rate-limit"
    burst = min((amount for amount, _ in limits_of(child_items)), default=INF)
    assert refused == any(burst > amount for amount, _ in limits_of(parent))


@pytest.mark.parametrize("parent, child, verdict", [
    (None, "10/minute", None),
    ("10/minute", None, "rate-limit"),
    ("10/minute", "10/minute", None),
    ("10/minute", "11/minute", "rate-limit"),
    ("10/minute", "10/hour", None),
    ("10/minute", "10/second", "rate-limit"),
    ("10/minute;100/hour", "10/hour", None),
    ("10/minute;100/hour", "5/second;100/hour", "rate-limit"),  # nothing holds it to 10 a minute
    ("10/minute;100/hour", "10/minute;100/hour", None),
    ("10/minute", "10 per 2 minutes", None),
    # Documented conservative case: a shorter window repeated would fit (at most 2 x 5 in an hour),
    # but the rule asks for one limit over a window at least as long.
    ("10/hour", "5/30 minutes", "rate-limit"),
])
def test_rate_limit_examples(parent, child, verdict):
    assert widening({"rate_limit": parent}, {"rate_limit": child}) == verdict


# --- quota and budget ------------------------------------------------------------------------------

PERIODS = ("day", "month", "total")
# (child period, parent period) where every parent window lies inside one child window.
INSIDE_ONE = {("day", "day"), ("month", "month"), ("total", "total"), ("month", "day"), ("total", "day"),
              ("total", "month")}
allowances = st.one_of(st.none(), st.tuples(st.integers(1, 100), st.sampled_from(PERIODS)))


def most_in_period(child, period):
    """At most how many units `child` (limit, period) or None admits in one UTC `period` window."""
    if child is None:
        return INF
    limit, own = child
    if (own, period) in INSIDE_ONE:
        return limit
    if (own, period) == ("day", "month"):
        return limit * 31
    return INF  # a daily or monthly allowance renews for ever


@pytest.mark.parametrize("kind", ["quota", "budget"])
@PROPERTY
@given(parent=allowances, child=allowances)
def test_allowance_covered_only_when_the_child_can_spend_no_more_in_any_parent_period(kind, parent, child):
    def columns(value):
        return {f"{kind}_limit": value and value[0], f"{kind}_period": value and value[1]}

    verdict = widening(columns(parent), columns(child))
    assert verdict in (None, kind)
    assert (verdict is None) == allowance_covered(parent, child)
    exceeds = parent is not None and most_in_period(child, parent[1]) > parent[0]
    if verdict is None:
        assert not exceeds
    elif not (child is not None and (child[1], parent[1]) == ("day", "month")):
        assert exceeds  # exact outside the one documented conservative case, below
    if child is not None and parent is not None and (child[1], parent[1]) == ("day", "month"):
        assert verdict == kind  # "over a period at least as long", even where 31 days would fit


@pytest.mark.parametrize("parent, child, verdict", [
    (None, (5, "day"), None),
    ((5, "day"), None, "quota"),
    ((5, "day"), (5, "day"), None),
    ((5, "day"), (6, "day"), "quota"),
    ((5, "day"), (5, "month"), None),
    ((5, "day"), (5, "total"), None),
    ((5, "month"), (5, "total"), None),
    ((5, "month"), (5, "day"), "quota"),
    ((5, "total"), (1, "month"), "quota"),
    ((5, "total"), (1, "day"), "quota"),
    ((31, "month"), (1, "day"), "quota"),  # documented conservative case: 31 x 1 would fit
])
def test_quota_examples(parent, child, verdict):
    def columns(value):
        return {"quota_limit": value and value[0], "quota_period": value and value[1]}

    assert widening(columns(parent), columns(child)) == verdict


# --- all dimensions: first_widening ----------------------------------------------------------------

@st.composite
def restrictions(draw):
    """The restricting columns of a key, as stored."""
    quota, budget = draw(allowances), draw(allowances)
    return {"scopes": draw(scope_lists), "allowed_ips": draw(allowlists), "expires_at": draw(expiries),
            "rate_limit": draw(rate_limit_lists),
            "quota_limit": quota and quota[0], "quota_period": quota and quota[1],
            "budget_limit": budget and budget[0], "budget_period": budget and budget[1]}


@st.composite
def narrowed(draw, parent):
    """Columns often at least as narrow as `parent`'s in each dimension, and sometimes anything."""
    child = draw(restrictions())
    if draw(st.booleans()):
        child["scopes"] = draw(st.lists(st.sampled_from(parent["scopes"]), unique=True)) if parent["scopes"] else []
    if parent["allowed_ips"] and draw(st.booleans()):
        child["allowed_ips"] = draw(st.lists(cidrs(tuple(_nets(parent["allowed_ips"]))), min_size=1, max_size=3))
    if parent["expires_at"] is not None and draw(st.booleans()):
        child["expires_at"] = parent["expires_at"] - draw(st.sampled_from((0, 1, 10 ** 6))) * MICRO
    if parent["rate_limit"] and draw(st.booleans()):
        child["rate_limit"] = [(max(1, amount - draw(st.integers(0, 2))), times, unit)
                               for amount, times, unit in parent["rate_limit"]]
    for kind in ("quota", "budget"):
        if parent[f"{kind}_limit"] is not None and draw(st.booleans()):
            child[f"{kind}_limit"] = max(1, parent[f"{kind}_limit"] - draw(st.integers(0, 3)))
            child[f"{kind}_period"] = draw(st.sampled_from(PERIODS[PERIODS.index(parent[f"{kind}_period"]):]))
    return child


def stored(columns):
    """The columns with the rate limit in flask-limiter notation, as on the model."""
    return {**columns, "rate_limit": notation(columns["rate_limit"])}


def semantically_covered(parent, child):
    """name -> True when the child admits nothing more than the parent in that dimension."""
    def allowance(kind, columns):
        return None if columns[f"{kind}_limit"] is None else (columns[f"{kind}_limit"], columns[f"{kind}_period"])

    def within(kind):
        wider = allowance(kind, parent)
        return wider is None or most_in_period(allowance(kind, child), wider[1]) <= wider[0]

    return {
        "scopes": scopes_semantically_covered(parent["scopes"], child["scopes"]),
        "allowed-ips": ips_semantically_covered(parent["allowed_ips"], child["allowed_ips"]),
        "expires-at": all(unexpired(parent["expires_at"], t)
                          for t in instants(parent["expires_at"], child["expires_at"])
                          if unexpired(child["expires_at"], t)),
        "rate-limit": all(most_in_span(child["rate_limit"], window) <= amount
                          for amount, window in limits_of(parent["rate_limit"])),
        "quota": within("quota"),
        "budget": within("budget"),
    }


@st.composite
def parent_and_child(draw):
    parent = draw(restrictions())
    return parent, draw(narrowed(parent))


@PROPERTY
@given(pair=parent_and_child())
def test_first_widening_none_means_the_child_admits_nothing_the_parent_does_not(pair):
    parent, child = pair
    verdict = widening(stored(parent), stored(child))
    assert verdict in ORDER + (None,)
    semantic = semantically_covered(parent, child)
    checked = ORDER if verdict is None else ORDER[:ORDER.index(verdict)]
    for name in checked:  # every dimension found covered is semantically covered
        assert semantic[name], name


@PROPERTY
@given(pair=parent_and_child())
def test_a_key_covers_itself_and_its_narrowed_copy_covers_nothing_wider(pair):
    parent, child = pair
    assert widening(stored(parent), stored(parent)) is None
    if widening(stored(parent), stored(child)) is None and widening(stored(child), stored(parent)) is None:
        assert all(semantically_covered(child, parent).values())


NARROW = {"scopes": ["a:b"], "allowed_ips": ["10.0.0.0/8"], "expires_at": NOW, "rate_limit": "10/minute",
          "quota_limit": 10, "quota_period": "month", "budget_limit": 10, "budget_period": "month"}
# One value per dimension that admits something NARROW does not.
WIDER = {"scopes": {"scopes": ["a:c"]}, "allowed-ips": {"allowed_ips": ["11.0.0.0/8"]},
         "expires-at": {"expires_at": None}, "rate-limit": {"rate_limit": "11/minute"},
         "quota": {"quota_limit": 11}, "budget": {"budget_period": "day"}}


@pytest.mark.parametrize("widened", [names for size in range(len(ORDER) + 1)
                                     for names in itertools.combinations(ORDER, size)],
                         ids=lambda names: "+".join(names) or "none")
def test_first_widening_names_the_first_widened_dimension_in_the_documented_order(widened):
    child = dict(NARROW)
    for name in widened:
        child.update(WIDER[name])
    assert widening(NARROW, child) == (widened[0] if widened else None)


def test_restrictions_of_reads_columns_and_leaves_missing_ones_unset():
    assert Restrictions.of({}) == Restrictions()
    assert Restrictions.of({name: None for name in COLUMNS}) == Restrictions()
    got = Restrictions.of({**NARROW, "allowed_ips": ["10.1.2.3/8", "2001:db8::1"], "rate_limit": "10/minute;5/2 hours"})
    assert got == Restrictions(scopes=("a:b",), networks=(ipaddress.ip_network("10.0.0.0/8"),
                                                         ipaddress.ip_network("2001:db8::1/128")),
                               expires_at=NOW, rate_limits=((10, 60), (5, 7200)),
                               quota=(10, "month"), budget=(10, "month"))


def test_restrictions_are_immutable_values():
    """Parsed once and compared, never changed: hashable, equal by value, frozen."""
    first, second = Restrictions.of(NARROW), Restrictions.of(dict(NARROW))
    assert first == second and hash(first) == hash(second)
    assert len({first, second, Restrictions()}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.scopes = ("*:*",)


def test_columns_of_reads_every_restricting_attribute_and_nothing_else():
    key = SimpleNamespace(name="not a restriction", secret="lk_x", **NARROW)
    assert columns_of(key) == NARROW
    assert widening(columns_of(key), NARROW) is None


# --- inherit ---------------------------------------------------------------------------------------

DIMENSIONS = {"scopes": ("scopes",), "allowed-ips": ("allowed_ips",), "expires-at": ("expires_at",),
              "rate-limit": ("rate_limit",), "quota": ("quota_limit", "quota_period"),
              "budget": ("budget_limit", "budget_period")}


@PROPERTY
@given(pair=parent_and_child(), data=st.data())
def test_inherited_columns_are_covered_when_the_given_ones_are(pair, data):
    """A key minted by a key with only some attributes given: the others come from the parent (but
    never its scopes, which are grants), and the result is covered when what was given is."""
    parent, child = pair
    given_dimensions = data.draw(st.sets(st.sampled_from(ORDER)))
    given = {column: stored(child)[column] for name in given_dimensions for column in DIMENSIONS[name]}
    result = inherit(stored(parent), given)
    assert set(result) == set(COLUMNS)
    for name, columns in DIMENSIONS.items():
        for column in columns:
            if name in given_dimensions:
                assert result[column] == given[column]
            elif name == "scopes":
                assert result[column] is None  # not inherited: a minted key has the scopes it is given
            else:
                assert result[column] == stored(parent)[column]
    # The first given dimension (in the documented order) that is wider than the parent's, alone.
    given_verdict = next((name for name in ORDER if name in given_dimensions and widening(
        {column: stored(parent)[column] for column in DIMENSIONS[name]},
        {column: given[column] for column in DIMENSIONS[name]}) is not None), None)
    if given_verdict is None:
        assert widening(stored(parent), result) is None
        inherited = {**child, **{column: parent[column] for column in COLUMNS if column not in given}}
        inherited["scopes"] = child["scopes"] if "scopes" in given else []
        assert all(semantically_covered(parent, inherited).values())
    else:  # a given widening is not hidden by inheritance
        assert widening(stored(parent), result) == given_verdict


@pytest.mark.parametrize("name", [name for name in ORDER if name != "scopes"])
def test_an_explicit_none_is_not_replaced_by_the_parents_restriction(name):
    given = {column: None for column in DIMENSIONS[name]}
    result = inherit(NARROW, given)
    assert all(result[column] is None for column in DIMENSIONS[name])
    assert widening(NARROW, {**result, "scopes": ["a:b"]}) == name
