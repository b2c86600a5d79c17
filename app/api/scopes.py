"""GET /v1/scopes: the built-in scopes, for frontend builders. Public: it names no secret."""
from app.api import bp
from app.api.helpers.jsonapi import respond
from app.services import scopes as scope_rules


@bp.get("/scopes")
def list_scopes():
    """Return the scope catalog as a collection of `scopes` resources."""
    data = [
        {"type": "scopes", "id": name,
         "attributes": {"description": text, "admin-only": name in scope_rules.ADMIN_ONLY}}
        for name, text in scope_rules.CATALOG.items()
    ]
    return respond({"data": data, "meta": {"wildcards": "A '*' segment matches any segment; a trailing '*' "
                                                        "also matches deeper ones ('llm:*' grants 'llm:gpt-4o')."}})
