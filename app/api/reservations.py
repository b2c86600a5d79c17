"""POST /v1/reservations/<id>/settle and /release: finish a reservation made by a verification with
`"reserve": true` (app/services/reservations.py has the rules).

Only the caller that reserved may finish it (the same key with `keys:verify`, or the same admin's
session); to anyone else it does not exist. Both answer 200 with `meta.reservation` (its state,
estimate and final cost), the same again for the same request, and 409 for a different one or
after expiry. Like verifications, settlements are not under RATE_LIMIT_DEFAULTS (a service settles
as often as it verifies; the verification was counted): failed authentications are limited per
address, as on the verification endpoint.
"""
from flask import make_response
from redis.exceptions import RedisError

from app.api import bp
from app.api.helpers.auth import require
from app.api.helpers.errors import ApiError
from app.api.helpers.jsonapi import encode
from app.api.helpers.ratelimit import client_ip, limits_itself
from app.api.helpers.requests import optional_json_body
from app.api.verify import HEADERS, MAX_COST, FailureLimit, caller_identity
from app.services import allowances
from app.services import reservations as service

ID_LENGTH = 64  # longer ids name nothing: refused before the storage is asked


def _caller():
    """The caller, as the verification endpoint takes it; failures count against the same per-address
    limit (RATE_LIMIT_AUTH_FAILURES)."""
    try:
        caller = require("keys:verify")
        if caller.key is None and not caller.is_admin:
            raise ApiError(403, "Insufficient scope", "Reservations belong to keys with keys:verify and to admins' "
                           "sessions.", code="INSUFFICIENT_SCOPES")
    except ApiError as refusal:
        FailureLimit(client_ip()).count(refusal)
        raise
    return caller


def _finish(caller, reservation_id: str, cost: int | None):
    if len(reservation_id) > ID_LENGTH:
        raise _not_found()
    action = service.SETTLED if cost is not None else service.RELEASED
    try:
        settlement, fields = service.reservations().finish(reservation_id, caller_identity(caller), cost)
    except RedisError:
        allowances.tolerate_storage_error("reservation settlement")
        raise ApiError(503, "Service unavailable", "The counters' storage cannot be reached; settle again later.",
                       code="LIMITS_UNAVAILABLE") from None
    if settlement.state == service.MISSING:
        raise _not_found()
    if settlement.state == service.EXPIRED:
        raise ApiError(409, "Conflict", f"The reservation expired and stays charged at its estimate "
                       f"({settlement.estimate}).", code="RESERVATION_EXPIRED")
    if settlement.state != action or (cost is not None and settlement.cost != cost):
        raise ApiError(409, "Conflict", f"The reservation was already {settlement.state} "
                       f"(cost {settlement.cost}).", code="RESERVATION_FINISHED")
    if fields is not None:
        service.count_difference(fields, settlement)
    meta = {"reservation": {"id": reservation_id, "state": settlement.state, "estimate": settlement.estimate,
                            "cost": settlement.cost}}
    return make_response(encode({"meta": meta}), 200, HEADERS)


def _not_found():
    return ApiError(404, "Not found", "No such reservation.", code="RESERVATION_NOT_FOUND", parameter="id")


@bp.post("/reservations/<reservation_id>/settle")
def settle_reservation(reservation_id):
    """Settle a reservation at its actual `cost` (lower or higher than the estimate)."""
    caller = _caller()
    cost = optional_json_body().get("cost")
    if not isinstance(cost, int) or isinstance(cost, bool) or not 0 <= cost <= MAX_COST:
        raise ApiError(422, "Validation error", f"cost is the actual cost, a whole number from 0 to {MAX_COST}.",
                       pointer="/data/attributes/cost")
    return _finish(caller, reservation_id, cost)


@bp.post("/reservations/<reservation_id>/release")
def release_reservation(reservation_id):
    """Release a reservation: its whole estimate goes back to the budget."""
    return _finish(_caller(), reservation_id, None)


def init_app(app):
    for view in (settle_reservation, release_reservation):
        limits_itself(app, f"{bp.name}.{view.__name__}")
