"""The gateway's doors of the fast path (app/fast_path.py) and its Flask views are two doors to one
gateway (`chat`, `embed`): the same request gets the same answer through either, errors included,
and a call through the fast path is admitted, settled and counted as through Flask. In process,
against tests/upstream.py."""
import json

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from app.fast_path import FastPath
from app.services import allowances
from tests.upstream import PROVIDERS, Upstream

UPSTREAM_KEY = "upstream-credential-fast-path-0123"
CHAT = "/llm/v1/chat/completions"
HELLO = [{"role": "user", "content": "say hello"}]


@pytest.fixture(scope="module")
def upstream():
    with Upstream(UPSTREAM_KEY) as server:
        yield server


@pytest.fixture
def storage_errors():
    """Extra settings (a test parametrizes it)."""
    return {}


@pytest.fixture
def config_overrides(upstream, tmp_path, monkeypatch, storage_errors):
    monkeypatch.setenv("LOCAL_LLM_KEY", UPSTREAM_KEY)
    monkeypatch.setenv("WRONG_LLM_KEY", "not-the-upstream-credential")
    providers = tmp_path / "providers.toml"
    providers.write_text(PROVIDERS.format(url=upstream.url))
    return {"LLM_PROVIDERS_FILE": str(providers), **storage_errors}


def _keys(make):
    owner = make.user()
    return {
        "any": make.key(owner, scopes=["llm:*"]).secret,
        "narrow": make.key(owner, scopes=["llm:local:embed"]).secret,
        "spent": make.key(owner, scopes=["llm:*"], budget_limit=1, budget_period="day").secret,
        "elsewhere": make.key(owner, scopes=["llm:*"], allowed_ips=["10.0.0.0/8"]).secret,
        "revoked": make.key(owner, scopes=["llm:*"], status="revoked").secret,
    }


# Each request: (path, change to {"json", "headers"}, status).
VARIANTS = [
    (CHAT, lambda r, k: None, 200),
    (CHAT, lambda r, k: r["json"].update(stream=True), 200),
    (CHAT, lambda r, k: r.update(headers={"X-API-Key": k["any"]}), 200),
    ("/llm/v1/embeddings", lambda r, k: r.update(json={"model": "local/embed", "input": ["one two"]}), 200),
    (CHAT, lambda r, k: r.update(headers={}), 401),
    (CHAT, lambda r, k: r.update(headers={"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x"}), 401),
    (CHAT, lambda r, k: r.update(headers={"Authorization": "Bearer lk_nope"}), 401),
    (CHAT, lambda r, k: r.update(headers={"Authorization": f"Bearer {k['revoked']}"}), 401),
    (CHAT, lambda r, k: r.update(headers={"Authorization": f"Bearer {k['elsewhere']}"}), 403),
    (CHAT, lambda r, k: r.update(headers={"Authorization": f"Bearer {k['narrow']}"}), 403),
    (CHAT, lambda r, k: r.update(headers={"Authorization": f"Bearer {k['spent']}"}), 429),
    (CHAT, lambda r, k: r.update(data="{not json", json=None), 400),
    (CHAT, lambda r, k: r.update(data="[" * 2000 + "]" * 2000, json=None), 400),  # deeper than any parser goes
    (CHAT, lambda r, k: r["json"].update(model="local/nothing"), 404),
    (CHAT, lambda r, k: r["json"].update(messages=[]), 400),
    (CHAT, lambda r, k: r["json"].update(max_tokens=0), 400),
    (CHAT, lambda r, k: r["json"].update(messages=[{"role": "user", "content": "fail:429"}]), 429),
    (CHAT, lambda r, k: r["json"].update(messages=[{"role": "user", "content": "fail:500"}]), 500),
    (CHAT, lambda r, k: r["json"].update(messages=[{"role": "user", "content": "hang:5"}]), 504),
]


def _send(client, make, path, change):
    keys = _keys(make)
    request = {"json": {"model": "local/tiny", "messages": HELLO},
               "headers": {"Authorization": f"Bearer {keys['any']}"}}
    change(request, keys)
    return client.post(path, **request)


def _comparable(response):
    headers = sorted((name, value) for name, value in response.headers.items() if name != "Content-Length")
    text = response.get_data(as_text=True)
    if response.mimetype == "text/event-stream":
        events = [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data: {")]
        body = [{name: value for name, value in event.items() if name not in ("id", "created")} for event in events]
    else:
        body = json.loads(text)
        for name in ("id", "created"):
            body.pop(name, None)
    return response.status_code, headers, body


@pytest.mark.parametrize("path, change, status", VARIANTS)
def test_both_doors_give_the_same_answer(client, make, passed_on, monkeypatch, path, change, status):
    fast = _send(client, make, path, change)
    assert passed_on == [], "the fast path answers this request itself"
    monkeypatch.setattr(FastPath, "takes", lambda self, environ: None)
    slow = _send(client, make, path, change)
    assert passed_on == [1]
    assert fast.status_code == status, fast.get_data(as_text=True)
    assert _comparable(fast) == _comparable(slow)


@pytest.mark.parametrize("stream", [False, True])
def test_a_call_through_the_fast_path_is_settled_and_counted(client, make, verifier, passed_on, stream):
    key = make.key(make.user(), scopes=["llm:*"], budget_limit=1000, budget_period="month")
    answer = client.post(CHAT, json={"model": "local/tiny", "messages": HELLO, "stream": stream},
                         headers={"Authorization": f"Bearer {key.secret}"})
    assert answer.status_code == 200 and passed_on == []
    answer.get_data()  # a stream is settled once it has been read to the end
    checked = client.post("/v1/api-keys/verify", json={"key": key.secret, "cost": 0}, headers=verifier)
    assert checked.get_json()["meta"]["budget"]["used"] == 5  # 2 tokens in, 3 out: not the estimate (66)


@pytest.mark.parametrize("change", [
    lambda r: r.update(query_string={"api-version": "1"}),
    lambda r: r["headers"].update(Origin="https://console.example.com"),
])
def test_a_request_a_hook_has_work_on_goes_to_flask(client, make, passed_on, change):
    request = {"json": {"model": "local/tiny", "messages": HELLO},
               "headers": {"Authorization": f"Bearer {make.key(make.user(), scopes=['llm:*']).secret}"}}
    change(request)
    response = client.post(CHAT, **request)
    assert response.status_code == 200 and passed_on == [1]


@pytest.mark.parametrize("storage_errors", [{"RATELIMIT_ON_STORAGE_ERROR": "closed"}])
def test_limits_that_cannot_be_checked_are_a_503_through_both_doors_and_reach_no_upstream(
        client, make, upstream, passed_on, monkeypatch):
    def unreachable(*args):
        raise RedisConnectionError("down")

    monkeypatch.setattr(allowances, "admit_key", unreachable)
    key = make.key(make.user(), scopes=["llm:*"], budget_limit=1000, budget_period="month")
    sent = len(upstream.requests)
    answers = [client.post(CHAT, json={"model": "local/tiny", "messages": HELLO},
                           headers={"Authorization": f"Bearer {key.secret}"})]
    monkeypatch.setattr(FastPath, "takes", lambda self, environ: None)
    answers.append(client.post(CHAT, json={"model": "local/tiny", "messages": HELLO},
                               headers={"Authorization": f"Bearer {key.secret}"}))
    assert passed_on == [1]
    for answer in answers:
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
        assert answer.get_json()["error"]["code"] == "limits_unavailable"
    assert len(upstream.requests) == sent
