"""The gateway's providers file (app/gateway/providers.py) and the `llm` commands."""
import pytest

from app import create_app
from app.gateway import providers
from config import TestingConfig
from tests.upstream import Upstream

GOOD = """
[[providers]]
name = "local"
base_url = "{url}"
api_key_env = "TEST_LLM_KEY"

[[providers.models]]
name = "tiny"
upstream = "tiny-2026"
input_price = 2
output_price = 4

[aliases]
small = "local/tiny"
"""


def write(tmp_path, text):
    path = tmp_path / "providers.toml"
    path.write_text(text)
    return str(path)


def test_a_providers_file_and_what_it_declares(tmp_path):
    catalog = providers.load(write(tmp_path, GOOD.format(url="http://127.0.0.1:9/v1/")))
    model = catalog.find("local/tiny")
    assert catalog.find("small") is model and [m.id for m in catalog.listed()] == ["local/tiny"]
    assert (model.upstream, model.scope, model.max_tokens) == ("tiny-2026", "llm:local:tiny", 1024)
    assert model.provider.base_url == "http://127.0.0.1:9/v1" and model.provider.timeout == 60.0
    assert model.cost(1000, 0) == 2 and model.cost(1, 1) == 1  # rounded up: never less than used
    assert providers.load("") is providers.EMPTY


@pytest.mark.parametrize("text, message", [
    ("[[providers]]\nname = 'x'\napi_key_env = 'K'\n", "providers[0].base_url is required"),
    ("[[providers]]\nname = 'Big'\nbase_url = 'http://h/v1'\napi_key_env = 'K'\n", "providers[0].name='Big'"),
    ("[[providers]]\nname = 'x'\nbase_url = 'ftp://h'\napi_key_env = 'K'\n", "http:// or https://"),
    ("[[providers]]\nname = 'x'\nbase_url = 'https://h/v1?api-version=1'\napi_key_env = 'K'\n", "no query"),
    ("[[providers]]\nname = 'x'\nbase_url = 'http:///v1'\napi_key_env = 'K'\n", "with a host"),
    ("[[providers]]\nname = 'x'\nbase_url = 'http://h'\napi_key_env = 'K'\ntimeout_seconds = 0\n", "timeout_seconds"),
    ("[[providers]]\nname = 'x'\nbase_url = 'http://h'\napi_key_env = 'K'\n[[providers.models]]\nname = 'm'\n",
     "models[0].input_price is required"),
    ("[[providers]]\nname = 'x'\nbase_url = 'http://h'\napi_key_env = 'K'\n"
     "[[providers.models]]\nname = 'm'\ninput_price = 1\noutput_price = 1\n"
     "[[providers.models]]\nname = 'm'\ninput_price = 1\noutput_price = 1\n", "'x/m' is declared twice"),
    ("[aliases]\nfast = 'x/m'\n", "aliases.fast names 'x/m'"),
    ("providers = [", "not TOML"),
])
def test_a_bad_providers_file_says_what_is_wrong(tmp_path, text, message):
    with pytest.raises(providers.ProvidersError) as raised:
        providers.load(write(tmp_path, text))
    assert message in str(raised.value)


def test_the_service_does_not_start_on_a_bad_or_missing_file(tmp_path):
    with pytest.raises(providers.ProvidersError, match="cannot be read"):
        create_app(TestingConfig, LLM_PROVIDERS_FILE=str(tmp_path / "missing.toml"))


def test_llm_models_and_providers_commands(tmp_path, monkeypatch):
    with Upstream("cli-upstream-credential-0123") as upstream:
        app = create_app(TestingConfig, LLM_PROVIDERS_FILE=write(tmp_path, GOOD.format(url=upstream.url)))
        runner = app.test_cli_runner()
        models = runner.invoke(args=["llm", "models"])
        assert models.exit_code == 0 and "local/tiny\tscope llm:local:tiny\tupstream tiny-2026" in models.output
        assert "aliases: small" in models.output
        monkeypatch.setenv("TEST_LLM_KEY", "cli-upstream-credential-0123")
        reachable = runner.invoke(args=["llm", "providers"])
        assert reachable.exit_code == 0, reachable.output
        assert reachable.output.split("\t")[2:] == ["$TEST_LLM_KEY set", "reachable\n"]
        assert "cli-upstream-credential" not in reachable.output
        monkeypatch.setenv("TEST_LLM_KEY", "a wrong credential")
        refused = runner.invoke(args=["llm", "providers"])
        assert refused.exit_code == 1 and refused.output.endswith("answers 401\n")
    down = runner.invoke(args=["llm", "providers"])
    assert down.exit_code == 1 and "unreachable (" in down.output
