"""The scope rules of app/services/scopes.py, pinned edge by edge, and the credential-in-URL guard.

Each case is chosen so that a small change to the rules (a comparison, a bound, a boolean, the
wildcard depth) breaks at least one of them. A reference matcher written here from the module's
documentation is compared with `covers` on generated patterns.
"""
import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.services import scopes as scope_rules
from app.services.scopes import covers, is_admin_only, is_valid_scope, key_allows
from tests.conftest import assert_error
from tests.test_api_keys import create_key, key_count

LIST = "/v1/api-keys"

# --- covers ----------------------------------------------------------------------------------------

COVERS = [
    # (granted, wanted, covers)
    ("keys:read", "keys:read", True),
    ("keys:read", "keys:write", False),
    ("keys:read", "users:read", False),
    ("keys:read:x", "keys:read", False),  # more segments never cover fewer
    ("keys:read", "keys:read:x", False),  # nor fewer (without a trailing '*') more
    ("keys:*:x", "keys:read", False),
    ("llm:*", "llm:gpt-4o", True),
    ("llm:*", "llm:openai:gpt-4o", True),  # a trailing '*' reaches deeper
    ("llm:*", "llm:openai:gpt-4o:mini", True),
    ("llm:*", "llm", False),  # but not shallower
    ("llm:*", "rag:search", False),
    ("a:*:c", "a:b:c", True),  # a middle '*' is exactly one segment
    ("a:*:c", "a:b:x:c", False),
    ("a:*:c", "a:c", False),
    ("a:*:c", "a:b:d", False),
    ("a:*:c", "a:b:c:d", False),
    ("a:*:*", "a:b", False),
    ("a:*:*", "a:b:c", True),
    ("a:*:*", "a:b:c:d", True),
    ("*:*", "keys:read", True),
    ("*:*", "a:b:c", True),
    ("*:*", "keys", False),
    ("*:read", "keys:read", True),
    ("*:read", "keys:write", False),
    ("*:read", "keys:read:x", False),
    ("keys:*", "keys:*", True),  # patterns cover patterns
    ("keys:read", "keys:*", False),
    ("keys:*", "*:*", False),
    ("*:*", "keys:*", True),
]


@pytest.mark.parametrize("granted, wanted, expected", COVERS, ids=[f"{g}>{w}" for g, w, _ in COVERS])
def test_covers(granted, wanted, expected):
    assert covers(granted, wanted) is expected


def reference_covers(granted, wanted):
    """The documented rule as a regular expression: '*' is one segment, a trailing '*' one or more."""
    parts = granted.split(":")
    body = ":".join("[^:]+" if part == "*" else re.escape(part) for part in parts[:-1])
    last = "[^:]+(:[^:]+)*" if parts[-1] == "*" else re.escape(parts[-1])
    return re.fullmatch(f"{body}:{last}" if body else last, wanted) is not None


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(granted=st.lists(st.sampled_from(("a", "b", "*")), min_size=2, max_size=4).map(":".join),
       wanted=st.lists(st.sampled_from(("a", "b", "c")), min_size=1, max_size=5).map(":".join))
def test_covers_agrees_with_the_documented_rule_on_concrete_scopes(granted, wanted):
    assert covers(granted, wanted) is reference_covers(granted, wanted)


def test_allows_needs_one_granted_scope_to_cover():
    assert scope_rules.allows(["keys:read", "llm:*"], "llm:x")
    assert scope_rules.allows(["llm:*", "keys:read"], "keys:read")
    assert not scope_rules.allows(["keys:read", "llm:*"], "keys:write")
    assert not scope_rules.allows([], "keys:read")


# --- is_valid_scope --------------------------------------------------------------------------------

SEG64 = "a" * 64
AT_LIMIT = ":".join([SEG64, SEG64, SEG64, "d" * 5])  # 200 characters, every segment valid
assert len(AT_LIMIT) == 200

VALID = ["keys:read", "a:b", "*:*", "llm:*", "a:*:c", "1a:b", "a-b_c.d:x", "a:b:c:d:e:f", "a.:b-",
         f"{SEG64}:b", f"a:{SEG64}", "0:9", AT_LIMIT]
INVALID = [
    "keys", "*", "", ":", "a:", ":a", "a::b",  # one segment, empty segments
    "Keys:read", "keys:Read", "KEYS:READ",  # uppercase
    "-a:b", "a:-b", "_a:b", "a:_b", ".a:b",  # leading punctuation
    "a b:c", "a:b ", " a:b", "a:b!", "é:a", "a/b:c",  # other characters
    "a:**", "a:b*", "a:*b", "*a:b",  # '*' is a whole segment or nothing
    f"{SEG64}a:b", f"a:{SEG64}a",  # a 65-character segment
    AT_LIMIT + "d",  # 201 characters
]


@pytest.mark.parametrize("scope", VALID)
def test_valid_scopes(scope):
    assert is_valid_scope(scope) is True


@pytest.mark.parametrize("scope", INVALID)
def test_invalid_scopes(scope):
    assert is_valid_scope(scope) is False


@pytest.mark.parametrize("scope", [123, None, ["keys:read"], b"keys:read", 1.5, ("a", "b"), {"a:b": 1}],
                         ids=["int", "none", "list", "bytes", "float", "tuple", "dict"])
def test_non_strings_are_invalid_scopes(scope):
    assert is_valid_scope(scope) is False


def test_the_length_limit_is_on_the_whole_scope():
    segments = ["a" * 50] * 4  # 4 x 50 + 3 colons: every segment valid, the whole too long
    assert is_valid_scope(":".join(segments)) is False
    assert is_valid_scope(":".join(["a" * 49] * 4)) is True  # 199


@pytest.mark.parametrize("scope", ["keys:read\n", "keys\n:read", "*\n:read"])
def test_a_newline_is_not_part_of_a_valid_scope(scope):
    """A regex ending in '$' also matches before a final newline: the grammar uses fullmatch."""
    assert is_valid_scope(scope) is False


# --- MAX_SCOPES, through the API -------------------------------------------------------------------

def test_max_scopes_is_fifty():
    assert scope_rules.MAX_SCOPES == 50


@pytest.mark.parametrize("extra, status", [(0, 201), (1, 422)], ids=["max", "max+1"])
def test_a_key_holds_at_most_max_scopes(app, client, make, secrets_seen, extra, status):
    owner = make.user()
    scopes = [f"svc:s{i}" for i in range(scope_rules.MAX_SCOPES + extra)]
    response = create_key(client, make.headers(owner), secrets_seen, scopes=scopes)
    if status == 201:
        assert response.status_code == 201, response.get_data(as_text=True)
        assert response.get_json()["data"]["attributes"]["scopes"] == scopes
        assert key_count(app, owner.id) == 1
    else:
        assert_error(response, 422, pointer="/data/attributes/scopes")
        assert key_count(app, owner.id) == 0


# --- admin-only scopes -----------------------------------------------------------------------------

ADMIN_ONLY = ["keys:verify", "admin:access", "keys:*", "*:*", "admin:*", "*:access", "*:verify"]
NOT_ADMIN_ONLY = ["keys:read", "keys:write", "users:*", "*:read", "admin:read", "keys:verify:x",
                  "admin:access:x", "verify:keys", "a:b:c"]


@pytest.mark.parametrize("scope", ADMIN_ONLY)
def test_admin_only_scopes_and_the_wildcards_that_cover_them(scope):
    assert is_admin_only(scope) is True


@pytest.mark.parametrize("scope", NOT_ADMIN_ONLY)
def test_other_scopes_are_not_admin_only(scope):
    assert is_admin_only(scope) is False


def test_the_admin_only_scopes_are_listed_in_the_catalog():
    assert set(scope_rules.ADMIN_ONLY) == {"keys:verify", "admin:access"}
    assert set(scope_rules.ADMIN_ONLY) <= set(scope_rules.CATALOG)
    assert all(is_valid_scope(name) and text for name, text in scope_rules.CATALOG.items())


CATALOG = {
    "users:read": "Read the owner's account (and, with admin:access, every account).",
    "users:write": "Change or delete the owner's account.",
    "keys:read": "List and read API keys, their usage and relationships.",
    "keys:write": "Create, change, revoke, suspend, reactivate, rotate and delete API keys.",
    "keys:verify": "Verify other keys through POST /v1/api-keys/verify (granted by admins only).",
    "usage:read": "Read usage analytics.",
    "audit:read": "Read the audit trail.",
    "admin:access": "Use the owner's admin rights (only when the owner is an admin).",
}


def test_the_public_scope_catalog_word_for_word(client):
    """GET /v1/scopes documents the scopes to frontend builders: a change to it is an API change."""
    response = client.get("/v1/scopes")
    assert response.status_code == 200
    got = {item["id"]: (item["attributes"]["description"], item["attributes"]["admin-only"])
           for item in response.get_json()["data"]}
    assert got == {name: (text, name in ("keys:verify", "admin:access")) for name, text in CATALOG.items()}
    assert not any(name.startswith("llm:") for name in got)  # no LLM_PROVIDERS_FILE: no gateway scopes
    assert "'llm:*' grants 'llm:openai:gpt-4o'" in response.get_json()["meta"]["wildcards"]


PROVIDERS = """
[[providers]]
name = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key_env = "TEST_OPENAI_KEY"

[[providers.models]]
name = "gpt-4o-mini"
input_price = 15
output_price = 60

[[providers.models]]
name = "gpt-4o"
input_price = 250
output_price = 1000

[[providers]]
name = "local"
base_url = "http://127.0.0.1:9/v1"
api_key_env = "TEST_LLM_KEY"

[[providers.models]]
name = "tiny"
input_price = 2
output_price = 4

[aliases]
small = "local/tiny"
"""


class TestGatewayScopes:
    @pytest.fixture
    def config_overrides(self, tmp_path):
        path = tmp_path / "providers.toml"
        path.write_text(PROVIDERS)
        return {"LLM_PROVIDERS_FILE": str(path)}

    def test_the_gateway_models_scopes_follow_the_built_in_ones(self, client, make, secrets_seen):
        """Per provider `llm:<provider>:*`, then one scope per model (an alias is no model of its own),
        to a signed-in caller only: they name the operator's providers and models."""
        headers = make.headers(make.user())
        for anonymous in ({}, {"Authorization": "Bearer not-a-valid-token"}):
            listed = client.get("/v1/scopes", headers=anonymous).get_json()["data"]
            assert [item["id"] for item in listed] == list(CATALOG)
        data = client.get("/v1/scopes", headers=headers).get_json()["data"]
        assert [item["id"] for item in data[:len(CATALOG)]] == list(CATALOG)
        gateway = [(item["id"], item["attributes"]["description"], item["attributes"]["admin-only"])
                   for item in data[len(CATALOG):]]
        assert gateway == [
            ("llm:openai:*", "Call every model of openai through the LLM gateway.", False),
            ("llm:openai:gpt-4o", "Call openai/gpt-4o through the LLM gateway.", False),
            ("llm:openai:gpt-4o-mini", "Call openai/gpt-4o-mini through the LLM gateway.", False),
            ("llm:local:*", "Call every model of local through the LLM gateway.", False),
            ("llm:local:tiny", "Call local/tiny through the LLM gateway.", False),
        ]
        # Each is a scope a user may put into a key.
        scopes = [scope for scope, _, _ in gateway]
        assert all(is_valid_scope(scope) and not is_admin_only(scope) for scope in scopes)
        created = create_key(client, headers, secrets_seen, name="chat", scopes=scopes)
        assert created.status_code == 201, created.get_json()
        assert created.get_json()["data"]["attributes"]["scopes"] == scopes


KEY_ALLOWS = [
    # (granted, wanted): allowed for an admin's key; for a non-admin's only if `wanted` is not admin-only
    (["keys:verify"], "keys:verify"),
    (["admin:access"], "admin:access"),
    (["keys:*"], "keys:verify"),
    (["*:*"], "keys:verify"),
    (["*:*"], "admin:access"),
    (["admin:*"], "admin:access"),
    (["*:access"], "admin:access"),
    (["keys:read", "keys:verify"], "keys:verify"),
    (["keys:read"], "keys:read"),
    (["keys:*"], "keys:read"),
    (["*:*"], "usage:read"),
    (["admin:*"], "admin:read"),
]


@pytest.mark.parametrize("owner_is_admin", [True, False], ids=["admin-owner", "user-owner"])
@pytest.mark.parametrize("granted, wanted", KEY_ALLOWS, ids=[f"{'+'.join(g)}>{w}" for g, w in KEY_ALLOWS])
def test_key_allows_admin_only_scopes_only_while_the_owner_is_an_admin(granted, wanted, owner_is_admin):
    assert key_allows(granted, owner_is_admin, wanted) is (owner_is_admin or not is_admin_only(wanted))


@pytest.mark.parametrize("owner_is_admin", [True, False], ids=["admin-owner", "user-owner"])
@pytest.mark.parametrize("granted, wanted", [(["keys:read"], "keys:write"), ([], "keys:read"),
                                             (["keys:read"], "keys:verify"), (["admin:read"], "admin:access"),
                                             (["keys:verify:x"], "keys:verify")])
def test_key_allows_nothing_the_key_was_not_granted(granted, wanted, owner_is_admin):
    assert key_allows(granted, owner_is_admin, wanted) is False


@pytest.mark.parametrize("granted, owner_is_admin, wanted", [
    (list(g), admin, w) for g, admin, w in itertools.product(
        [("keys:read",), ("keys:*",), ("*:*",), ("admin:*",), ("keys:verify", "admin:access")],
        [True, False], ["keys:read", "keys:write", "keys:verify", "admin:access", "users:read"])])
def test_key_allows_is_allows_less_admin_only_scopes_for_non_admins(granted, owner_is_admin, wanted):
    expected = scope_rules.allows(granted, wanted) and (owner_is_admin or wanted not in ("keys:verify", "admin:access"))
    assert key_allows(granted, owner_is_admin, wanted) is expected


# --- the credential-in-URL guard -------------------------------------------------------------------

NAMES = ["api_key", "apikey", "key", "access_token", "token"]
CASED = [variant for name in NAMES for variant in (name.upper(), name.title(), name[0].upper() + name[1:])]


@pytest.mark.parametrize("name", NAMES + sorted(set(CASED)))
def test_a_credential_parameter_name_is_refused_whatever_its_value_and_case(client, make, name):
    response = client.get(f"{LIST}?{name}=x", headers=make.headers(make.user()))
    error = assert_error(response, 400, code="CREDENTIAL_IN_QUERY")
    assert error["source"] == {"parameter": name}


@pytest.mark.parametrize("query", ["q=x&q=lk_abc", "q=lk_abc&q=x", "page[size]=5&filter[tag]=lk_x"])
def test_a_key_like_value_is_refused_in_any_parameter_even_repeated(client, make, query):
    response = client.get(f"{LIST}?{query}", headers=make.headers(make.user()))
    assert_error(response, 400, code="CREDENTIAL_IN_QUERY")


@pytest.mark.parametrize("query", ["page[size]=5", "x-q=lk", "x-q=xlk_abc", "x-keys=1", "x-tokens=1", "my_key=1",
                                   "filter[tag]=token"])
def test_an_innocent_query_is_answered(client, make, query):
    """(Names outside JSON:API's: an unknown all-lowercase name is a 400 of its own.)"""
    response = client.get(f"{LIST}?{query}", headers=make.headers(make.user()))
    assert response.status_code == 200, response.get_data(as_text=True)


@pytest.mark.parametrize("tags", [["ci\n"], ["ci", "prod\n"]])
def test_a_newline_is_not_part_of_a_valid_tag(client, make, secrets_seen, tags):
    owner = make.user()
    response = create_key(client, make.headers(owner), secrets_seen, tags=tags)
    assert_error(response, 422, pointer="/data/attributes/tags")
    assert key_count(client.application, owner.id) == 0
