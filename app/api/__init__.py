"""The /v1 JSON:API: every resource module registers its own routes on `bp` through `api`."""
from flask import Blueprint
from flask_rest_jsonapi_next import Api

from app.api.helpers.auth import refuse_query_credentials
from app.api.helpers.requests import check_json_body, check_path_ids, check_query, undasherize_query

bp = Blueprint("v1", __name__, url_prefix="/v1")
api = Api(blueprint=bp)
bp.before_request(refuse_query_credentials)  # public endpoints too
# Hostile input is answered 400/404 here, before the library or the database sees it (every route,
# anonymous requests too); see app/api/helpers/requests.py.
bp.before_request(check_query)
bp.before_request(check_path_ids)
bp.before_request(check_json_body)
bp.before_request(undasherize_query)

from app.api import api_keys, audit_events, auth, key_actions, scopes, usage, users, verify  # noqa: E402,F401
