"""Usage analytics: a key's time series by outcome, and a summary of all the caller's keys; both
break the LLM gateway's calls down by model (requests, cost, input and output tokens).

Counters are buffered per worker and written every USAGE_FLUSH_SECONDS; this worker's buffer is
flushed before reading, other workers' counts arrive within that interval.

The window is `filter[from]`, `filter[to]` and `group-by` (hour or day). JSON:API reserves
all-lowercase query parameter names, so their old names (`from`, `to`, `granularity`) are
deprecated: they still work for a release, and the answers to them carry a Deprecation header.
"""
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from flask import request
from sqlalchemy import func, select

from app.api import bp
from app.api.helpers.auth import require
from app.api.helpers.errors import ApiError
from app.api.helpers.jsonapi import respond
from app.api.helpers.permissions import get_owned_key, owner_filter
from app.api.helpers.requests import deprecated_parameters
from app.extensions import db
from app.models import ApiKey, KeyUsage
from app.models.types import utcnow
from app.services import usage

MAX_RANGE = {"hour": timedelta(days=31), "day": timedelta(days=731)}
FAILURES_EXCLUDED = ("VALID",)
# Times outside these cannot hold usage, and near datetime's own limits the window arithmetic (a
# default span back from `to`, conversion to UTC) overflows.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
RENAMED = {"filter[from]": "from", "filter[to]": "to", "group-by": "granularity"}  # new name: old name
RENAMED_ON = datetime(2026, 11, 23, tzinfo=UTC)
deprecated = deprecated_parameters(frozenset(RENAMED.values()), since=RENAMED_ON)


def _param(name):
    """Return (the name the request used, its value): `name` or its old one; (name, None) if neither."""
    old = RENAMED[name]
    if name in request.args and old in request.args:
        raise ApiError(400, "Bad request", f"Give {name} only ({old} is its old name).", parameter=old)
    used = old if old in request.args else name
    return used, request.args.get(used)


def _time(name, value, default):
    """Return the time given as parameter `name`, or `default` when it is absent (None)."""
    if value is None:
        return default
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        in_utc = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ApiError(400, "Bad request", f"{name} is an ISO 8601 time.", parameter=name) from None
    if not EARLIEST <= in_utc <= LATEST:
        raise ApiError(400, "Bad request", f"{name} is a time from {EARLIEST.date()} to {LATEST.date()}.",
                       parameter=name)
    return parsed


def _window(default_span):
    """Return (from, to, granularity) from the query string, validated."""
    group_by, granularity = _param("group-by")
    granularity = "hour" if granularity is None else granularity
    if granularity not in MAX_RANGE:
        raise ApiError(400, "Bad request", f"{group_by} is hour or day.", parameter=group_by)
    to, text = _param("filter[to]")
    end = _time(to, text, utcnow())
    since, text = _param("filter[from]")
    start = _time(since, text, end - default_span)
    if start >= end or end - start > MAX_RANGE[granularity]:
        raise ApiError(400, "Bad request", f"{since} must precede {to}, by at most "
                       f"{MAX_RANGE[granularity].days} days at {granularity} granularity.", parameter=since)
    return start, end, granularity


def _bucket(hour, granularity):
    return hour if granularity == "hour" else hour.replace(hour=0)


@bp.get("/api-keys/<int:key_id>/usage")
@deprecated
def key_usage(key_id):
    """Return the key's counts and cost per hour or day, by outcome (owner or admin)."""
    key = get_owned_key(key_id, require("usage:read"))
    start, end, granularity = _window(timedelta(days=1))
    usage.buffer().flush()
    rows = db.session.execute(
        select(KeyUsage.hour, KeyUsage.outcome, KeyUsage.model, KeyUsage.count, KeyUsage.cost,
               KeyUsage.input_tokens, KeyUsage.output_tokens)
        .where(KeyUsage.key_id == key.id, KeyUsage.hour >= start.replace(minute=0, second=0, microsecond=0),
               KeyUsage.hour < end).order_by(KeyUsage.hour))
    series = defaultdict(lambda: {"outcomes": defaultdict(int), "cost": 0, "models": defaultdict(_model_totals)})
    totals = defaultdict(int)
    for hour, outcome, model, count, cost, input_tokens, output_tokens in rows:
        point = series[_bucket(hour, granularity)]
        point["outcomes"][outcome] += count
        point["cost"] += cost
        totals[outcome] += count
        if model:
            _add_model(point["models"][model], count, cost, input_tokens, output_tokens)
    points = [{"time": time.isoformat(), "total": sum(p["outcomes"].values()), "cost": p["cost"],
               "outcomes": dict(p["outcomes"]), "models": dict(p["models"])} for time, p in sorted(series.items())]
    # Plural as every type, though one per key (per caller below): clients singularize a type to find its model.
    return respond({"data": {"type": "api-key-usages", "id": str(key.id), "attributes": {
        "from": start.isoformat(), "to": end.isoformat(), "granularity": granularity,
        "totals": dict(totals), "series": points}}})


def _model_totals():
    return {"requests": 0, "cost": 0, "input-tokens": 0, "output-tokens": 0}


def _add_model(totals, count, cost, input_tokens, output_tokens):
    """Add a counter row of an LLM model (the gateway's) to its totals."""
    totals["requests"] += int(count)
    totals["cost"] += int(cost)
    totals["input-tokens"] += int(input_tokens)
    totals["output-tokens"] += int(output_tokens)


@bp.get("/usage")
@deprecated
def usage_summary():
    """Summarise the caller's keys (an admin's: all keys): totals, errors, rate-limit hits, busiest keys."""
    actor = require("usage:read")
    start, end, _ = _window(timedelta(days=30))
    usage.buffer().flush()
    keys = owner_filter(select(ApiKey.id), ApiKey.user_id, actor).subquery()
    in_window = (KeyUsage.key_id.in_(select(keys.c.id)), KeyUsage.hour >= start, KeyUsage.hour < end)
    by_outcome = dict(db.session.execute(
        select(KeyUsage.outcome, func.sum(KeyUsage.count)).where(*in_window).group_by(KeyUsage.outcome)).all())
    cost = db.session.scalar(select(func.coalesce(func.sum(KeyUsage.cost), 0)).where(*in_window))
    busiest = db.session.execute(
        select(KeyUsage.key_id, ApiKey.name, func.sum(KeyUsage.count).label("n"))
        .join(ApiKey, ApiKey.id == KeyUsage.key_id).where(*in_window)
        .group_by(KeyUsage.key_id, ApiKey.name).order_by(func.sum(KeyUsage.count).desc()).limit(5)).all()
    by_model: defaultdict = defaultdict(_model_totals)
    for model, count, cost, input_tokens, output_tokens in db.session.execute(
            select(KeyUsage.model, func.sum(KeyUsage.count), func.sum(KeyUsage.cost), func.sum(KeyUsage.input_tokens),
                   func.sum(KeyUsage.output_tokens)).where(*in_window, KeyUsage.model != "").group_by(KeyUsage.model)):
        _add_model(by_model[model], count, cost, input_tokens, output_tokens)
    by_outcome = {outcome: int(count) for outcome, count in by_outcome.items()}
    return respond({"data": {"type": "usage-summaries", "id": str(actor.user_id), "attributes": {
        "from": start.isoformat(), "to": end.isoformat(),
        "total": sum(by_outcome.values()), "cost": int(cost),
        "errors": sum(n for outcome, n in by_outcome.items() if outcome not in FAILURES_EXCLUDED),
        "rate-limited": by_outcome.get("RATE_LIMITED", 0), "by-outcome": by_outcome,
        "busiest-keys": [{"id": str(key_id), "name": name, "total": int(n)} for key_id, name, n in busiest],
        "by-model": dict(sorted(by_model.items()))}}})
