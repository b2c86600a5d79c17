"""The /v1 JSON:API: every resource module registers its own routes on `bp` through `api`."""
from flask import Blueprint
from flask_rest_jsonapi_next import Api
from flask_rest_jsonapi_next.decorators import check_headers

from app.api.helpers.auth import refuse_query_credentials
from app.api.helpers.requests import (
    check_json_body,
    check_media_types,
    check_path_ids,
    check_query,
    undasherize_query,
)


class JsonApi(Api):
    """The library's Api without its own media type check on resources: `check_media_types` checks
    every route the same way (the library's refuses `Accept: application/vnd.api+json;q=0.9`)."""

    def route(self, resource, view, *urls, **kwargs):
        resource.decorators = tuple(decorator for decorator in resource.decorators if decorator is not check_headers)
        super().route(resource, view, *urls, **kwargs)


bp = Blueprint("v1", __name__, url_prefix="/v1")
api = JsonApi(blueprint=bp)
bp.before_request(refuse_query_credentials)  # public endpoints too
# Hostile input is answered 400/404 here, before the library or the database sees it (every route,
# anonymous requests too); see app/api/helpers/requests.py.
bp.before_request(check_media_types)
bp.before_request(check_query)
bp.before_request(check_path_ids)
bp.before_request(check_json_body)
bp.before_request(undasherize_query)

from app.api import (  # noqa: E402,F401
    api_keys,
    audit_events,
    auth,
    key_actions,
    openapi,
    reservations,
    scopes,
    usage,
    users,
    verify,
)
