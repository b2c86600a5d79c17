"""The gateway's providers: read from the TOML file LLM_PROVIDERS_FILE names, checked at start.

    [[providers]]
    name = "openai"                          # a scope segment: lower case, digits, _ . -
    base_url = "https://api.openai.com/v1"   # any OpenAI-compatible API (Azure OpenAI, Ollama, vLLM...)
    api_key_env = "OPENAI_API_KEY"           # the upstream credential is read from this variable
    timeout_seconds = 60                     # optional: connect, read and write timeouts

    [[providers.models]]
    name = "gpt-4o"                          # callers ask for "openai/gpt-4o" (or an alias)
    upstream = "gpt-4o-2024-08-06"           # optional: the name sent upstream (default: name)
    input_price = 250                        # budget units per 1,000 input tokens
    output_price = 1000                      # budget units per 1,000 output tokens
    max_tokens = 1024                        # optional: the estimate when a request sets none

    [aliases]
    "gpt-4o" = "openai/gpt-4o"

A model is addressed as `<provider>/<model>` or by an alias; the scope it needs is
`llm:<provider>:<model>` (scopes are colon-separated, so `llm:openai:*` covers every model of
`openai` and `llm:*` every model). Upstream credentials live in the environment only: never in the
database, the file or a log.
"""
import functools
import math
import os
import tomllib
from dataclasses import dataclass

import urllib3

from app.services.scopes import SEGMENT_RE

DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_TOKENS = 1024


class ProvidersError(RuntimeError):
    """The providers file is missing, unreadable or invalid: the service does not start."""


@dataclass(frozen=True)
class Model:
    provider: "Provider"
    name: str
    upstream: str
    input_price: int
    output_price: int
    max_tokens: int

    @property
    def id(self) -> str:
        return f"{self.provider.name}/{self.name}"

    @property
    def scope(self) -> str:
        return f"llm:{self.provider.name}:{self.name}"

    def cost(self, input_tokens: int, output_tokens: int) -> int:
        """Budget units for these tokens, rounded up: a call never costs less than it used."""
        return math.ceil((input_tokens * self.input_price + output_tokens * self.output_price) / 1000)


@dataclass(frozen=True)
class Provider:
    name: str
    base_url: str
    api_key_env: str
    timeout: float

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) or None

    @functools.cached_property  # read on every call: parsed once (a frozen dataclass's __dict__ takes it)
    def path(self) -> str:
        """The base URL's path ("/v1"), under which the API's paths go."""
        return urllib3.util.parse_url(self.base_url).path or ""


@dataclass(frozen=True)
class Catalog:
    models: dict  # id ("provider/model") and alias -> Model
    providers: tuple

    def find(self, name) -> Model | None:
        return self.models.get(name) if isinstance(name, str) else None

    def listed(self) -> list:
        """Every model once, by id (aliases are other names for them)."""
        return sorted({model.id: model for model in self.models.values()}.values(), key=lambda model: model.id)


EMPTY = Catalog({}, ())


def load(path: str | None) -> Catalog:
    """The catalog of the file at `path` (None or "": no gateway models). Raises ProvidersError."""
    if not path:
        return EMPTY
    try:
        with open(path, "rb") as source:
            document = tomllib.load(source)
    except OSError as error:
        raise ProvidersError(f"LLM_PROVIDERS_FILE={path}: cannot be read ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise ProvidersError(f"LLM_PROVIDERS_FILE={path}: not TOML ({error})") from None
    return _catalog(document, path)


def _catalog(document: dict, path: str) -> Catalog:
    models: dict = {}
    providers = []
    entries = document.get("providers", [])
    if not isinstance(entries, list):
        raise ProvidersError(f"{path}: providers must be an array of tables ([[providers]])")
    for index, entry in enumerate(entries):
        where = f"{path}: providers[{index}]"
        provider = Provider(_segment(entry, "name", where), _text(entry, "base_url", where).rstrip("/"),
                            _text(entry, "api_key_env", where),
                            _number(entry, "timeout_seconds", where, DEFAULT_TIMEOUT))
        if not provider.base_url.startswith(("http://", "https://")):
            raise ProvidersError(f"{where}.base_url must be an http:// or https:// URL")
        try:
            url = urllib3.util.parse_url(provider.base_url)
        except urllib3.exceptions.LocationParseError:
            url = None
        if url is None or not url.host or url.query is not None or url.fragment is not None:
            raise ProvidersError(f"{where}.base_url must be a URL with a host and no query or fragment")
        if any(other.name == provider.name for other in providers):
            raise ProvidersError(f"{where}.name: provider {provider.name!r} is declared twice")
        providers.append(provider)
        for number, spec in enumerate(entry.get("models", [])):
            at = f"{where}.models[{number}]"
            name = _segment(spec, "name", at)
            model = Model(provider, name, spec.get("upstream", name), _whole(spec, "input_price", at),
                          _whole(spec, "output_price", at), _whole(spec, "max_tokens", at, DEFAULT_MAX_TOKENS))
            if not isinstance(model.upstream, str) or not model.upstream:
                raise ProvidersError(f"{at}.upstream must be a model name")
            if model.id in models:
                raise ProvidersError(f"{at}: model {model.id!r} is declared twice")
            models[model.id] = model
    for alias, target in (document.get("aliases") or {}).items():
        if target not in models:
            raise ProvidersError(f"{path}: aliases.{alias} names {target!r}, which no provider serves")
        if alias in models:
            raise ProvidersError(f"{path}: aliases.{alias} is already a model's name")
        models[alias] = models[target]
    return Catalog(models, tuple(providers))


def _text(entry, field, where) -> str:
    value = entry.get(field) if isinstance(entry, dict) else None
    if not isinstance(value, str) or not value:
        raise ProvidersError(f"{where}.{field} is required (a string)")
    return value


def _segment(entry, field, where) -> str:
    value = _text(entry, field, where)
    if not SEGMENT_RE.fullmatch(value) or value == "*":
        raise ProvidersError(f"{where}.{field}={value!r} must be lower case letters, digits, '_', '.' or '-' "
                             "(it is a scope segment)")
    return value


def _whole(entry, field, where, default=None) -> int:
    value = entry.get(field, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProvidersError(f"{where}.{field} is required (a whole number, 0 or more)")
    return value


def _number(entry, field, where, default) -> float:
    value = entry.get(field, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ProvidersError(f"{where}.{field} must be a number of seconds above 0")
    return float(value)
