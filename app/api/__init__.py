"""The /v1 JSON:API: every resource module registers its own routes on `bp` through `api`."""
from flask import Blueprint
from flask_rest_jsonapi_next import Api

from app.api.helpers.auth import refuse_query_credentials
from app.api.helpers.requests import undasherize_query

bp = Blueprint("v1", __name__, url_prefix="/v1")
api = Api(blueprint=bp)
bp.before_request(refuse_query_credentials)  # public endpoints too
bp.before_request(undasherize_query)

from app.api import api_keys, audit_events, auth, key_actions, scopes, usage, users, verify  # noqa: E402,F401
