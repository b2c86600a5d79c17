"""Every /v1 operation against its OpenAPI document, in process, with schemathesis.

Schemathesis reads GET /v1/openapi.json from the app and sends each operation a bounded number of
requests generated from the document, valid ones, then invalid ones (derandomized: the same ones
on every run), and runs its checks on every answer: no 5xx; a documented status, content type,
headers and body; valid data accepted, invalid data refused; authentication enforced.

Each example acts with a credential made for it: a session (JWT) or an API key (in X-API-Key or
as a bearer), of an admin or of a user; half the examples address rows that exist (that user, a
key of theirs), so deleting an account in one example leaves the next one signed in. This takes
the place of schemathesis' stateful links (a key created, then read, changed, deleted): ids come
from the example's own actor, so every example stands alone and is replayed as it was generated.

Two answers are not taken for "valid data rejected" (schemathesis' positive_data_acceptance), and
only these:
- a 400 or 422 whose every error names a parameter or attribute the document marks
  `x-checked-by-server` (a Python validator, the filter grammar, a time judged against the present,
  a whole number written 1.0): JSON Schema cannot say the rule, the server checks it and names
  what it refused, as the document says it will;
- any refusal from an operation that documents no success: POST /v1/users/{id}/api-keys is routed
  (the list class serves both URLs) but always answers 405, pointing to POST /v1/api-keys.
"""
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.parameters import ParameterLocation

from app.api.openapi.fields import CHECKED
from tests.helpers import PASSWORD, bearer, key_header

CREDENTIALS = ("session", "key", "key-as-bearer")
AUTH_HEADERS = ("Authorization", "X-API-Key")
SETTINGS = settings(max_examples=25, derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_api_conforms_to_its_document(app, make, subtests, mode):
    document = schemathesis.openapi.from_wsgi("/v1/openapi.json", app)
    for result in document.get_all_operations():
        operation = result.ok()
        with subtests.test(operation.label):
            if mode is GenerationMode.NEGATIVE and not negatable(operation.definition.raw):
                pytest.skip("nothing in the request can be made invalid")
            exercise(operation, mode, make)


def negatable(operation):
    return bool(operation.get("parameters") or operation.get("requestBody") or operation.get("security"))


def exercise(operation, mode, make):
    """Send the operation's examples, each with a fresh actor, and check every answer."""
    security = operation.definition.raw.get("security")
    checked = checked_by_server(operation.definition.raw)
    # An operation that documents no success (a route that only refuses) has no valid data to accept.
    refuses_all = not any(status.startswith("2") for status in operation.definition.raw["responses"])

    @given(case=operation.as_strategy(generation_mode=mode), admin=st.booleans(),
           credential=st.sampled_from(CREDENTIALS), real=st.booleans())
    @SETTINGS
    def example(case, admin, credential, real):
        actor = Actor(make, admin, credential)
        if real:
            actor.address_real_rows(case)
        headers = None
        if security and is_valid(case, ParameterLocation.HEADER):  # an invalid header stays as generated
            headers = actor.headers(security)
            case.headers = {**{k: v for k, v in (case.headers or {}).items() if k not in AUTH_HEADERS}, **headers}
        response = case.call(headers=headers)
        excluded = [positive_data_acceptance] if refuses_all or names_only(response, checked) else None
        case.validate_response(response, headers=headers, transport_kwargs={"headers": headers},
                               excluded_checks=excluded)

    example()


def is_valid(case, location):
    """Whether the example's `location` (path, query, header, body) was generated valid: only those
    are made to address real rows or carry a real credential, or an invalid one would turn valid."""
    component = case.meta.components.get(location) if case.meta else None
    return component is None or component.mode is GenerationMode.POSITIVE


class Actor:
    """A fresh user with a key that may use every scope it may have, and a key to act on."""

    def __init__(self, make, admin, credential):
        self.user = make.user(admin=admin)
        self.key = make.key(self.user, scopes=("*:*",))
        self.target = make.key(self.user, name="target")
        self.make, self.credential = make, credential

    def headers(self, security):
        """The actor's credential if the operation takes its kind, else a session (or a refresh token)."""
        schemes = {name for requirement in security for name in requirement}
        if "refreshToken" in schemes:
            return bearer(self.make.token(self.user, refresh=True))
        if self.credential == "key" and "apiKey" in schemes:
            return key_header(self.key.secret)
        if self.credential == "key-as-bearer" and "apiKeyBearer" in schemes:
            return bearer(self.key.secret)
        return bearer(self.make.token(self.user))

    def address_real_rows(self, case):
        """Point the example's valid ids, login and verified key at rows that exist."""
        if is_valid(case, ParameterLocation.PATH):
            for name in case.path_parameters or {}:
                if name in ("id", "key_id"):
                    owner = case.path.startswith("/v1/users/") and name == "id"
                    case.path_parameters[name] = self.user.id if owner else self.target.id
        body = case.body if isinstance(case.body, dict) and is_valid(case, ParameterLocation.BODY) else {}
        data = body.get("data")
        if isinstance(data, dict) and "id" in data and "id" in (case.path_parameters or {}):
            data["id"] = str(case.path_parameters["id"])
        attributes = data.get("attributes") if isinstance(data, dict) else body  # a document, or a plain body
        if case.path == "/v1/auth/login" and isinstance(attributes, dict):
            attributes.update(email=self.user.email, password=PASSWORD)
        if case.path == "/v1/api-keys/verify" and isinstance(attributes, dict):
            attributes["key"] = self.target.secret


def checked_by_server(operation):
    """The error sources ("parameter" or "pointer", name) of the rules the document leaves to the server."""
    places = {("parameter", parameter["name"]) for parameter in operation.get("parameters", [])
              if parameter.get("schema", {}).get(CHECKED)}
    stack = [operation.get("requestBody", {})]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for name, schema in (node.get("properties") or {}).items():
                if isinstance(schema, dict) and schema.get(CHECKED):
                    places.add(("pointer", f"/data/attributes/{name}"))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return places


def names_only(response, places):
    """Whether `response` is a 400 or 422 whose every error names one of `places`."""
    if response.status_code not in (400, 422) or not places:
        return False
    errors = (response.json() or {}).get("errors") or [{}]
    sources = [error.get("source") or {} for error in errors]
    return all(("parameter", source.get("parameter")) in places
               or ("pointer", "/".join(str(source.get("pointer")).split("/")[:4])) in places for source in sources)
