"""GET /v1/scopes: the built-in scopes, for frontend builders, public (it names no secret); to a
signed-in caller (a session or a key) also the LLM gateway's, which name the operator's providers
and models: like the gateway's own `GET models`, not for anonymous callers."""
from app import gateway  # the module, not its catalog(): app.gateway imports app.api, which imports this
from app.api import bp
from app.api.helpers.auth import current_actor
from app.api.helpers.errors import ApiError
from app.api.helpers.jsonapi import respond
from app.services import scopes as scope_rules

WILDCARDS = ("A '*' segment matches any segment; a trailing '*' also matches deeper ones "
             "('llm:*' grants 'llm:openai:gpt-4o').")


def _scope(name, description, admin_only=False):
    return {"type": "scopes", "id": name, "attributes": {"description": description, "admin-only": admin_only}}


def gateway_scopes():
    """Return the scopes of the gateway's configured models (LLM_PROVIDERS_FILE): per provider
    `llm:<provider>:*`, then `llm:<provider>:<model>` per model; none without a providers file."""
    catalog = gateway.catalog()
    models = catalog.listed()
    data = []
    for provider in catalog.providers:
        data.append(_scope(f"llm:{provider.name}:*", f"Call every model of {provider.name} through the LLM gateway."))
        data.extend(_scope(model.scope, f"Call {model.id} through the LLM gateway.")
                    for model in models if model.provider.name == provider.name)
    return data


@bp.get("/scopes")
def list_scopes():
    """Return the scope catalog, then (to a signed-in caller) the gateway's scopes, as a collection
    of `scopes` resources."""
    data = [_scope(name, text, name in scope_rules.ADMIN_ONLY) for name, text in scope_rules.CATALOG.items()]
    if _signed_in():
        data += gateway_scopes()
    return respond({"data": data, "meta": {"wildcards": WILDCARDS}})


def _signed_in() -> bool:
    """Whether the request carries a valid session or key (a bad one is anonymous here: the list
    is public)."""
    try:
        return current_actor() is not None
    except ApiError:
        return False
