"""GET /docs/: the OpenAPI document (/v1/openapi.json) for people, in Swagger UI.

The page and its scripts, styles and icons are flask-swagger-ui's bundled copy of Swagger UI,
served from here: the page loads nothing from another host, so it works offline and behind a strict
egress policy. Swagger UI would send the document to its public validator for a badge unless told
not to (`validatorUrl: null`): an API's description stays on its own host.
"""
from flask_swagger_ui import get_swaggerui_blueprint

bp = get_swaggerui_blueprint("/docs", "/v1/openapi.json", blueprint_name="docs", config={
    "app_name": "Latchkey API",
    "validatorUrl": None,
    "oauth2RedirectUrl": "/docs/oauth2-redirect.html",  # no OAuth here; the default is an absolute URL
})
