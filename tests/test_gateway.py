"""The LLM gateway (issue 15) against a real Latchkey under gunicorn (gthread workers) and a local
OpenAI-compatible upstream (tests/upstream.py), driven by the official `openai` SDK.

Prices are 1,000 budget units per 1,000 tokens, so a call costs its tokens. On memory:// one worker
serves (limits are per process there); with Redis (CI's second pass) four, and the budget test
runs concurrent streams across them. Budgets are below 100 times a call's estimate, so no worker
leases a share of them (redis_counters): what one worker reports as used is then exact.
"""
import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
import requests

from app.gateway import proxy
from tests.helpers import Seeder
from tests.servers import (
    fresh_database,
    gunicorn_master,
    redis_url_or_none,
    run_migrations,
    service_env,
    wait_until,
)
from tests.upstream import PROVIDERS, Upstream

UPSTREAM_KEY = "upstream-credential-do-not-log-7f3a9c"
WORKERS = 4 if redis_url_or_none() else 1


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gateway")
    with Upstream(UPSTREAM_KEY) as upstream, fresh_database(tmp) as database_url:
        providers = tmp / "providers.toml"
        providers.write_text(PROVIDERS.format(url=upstream.url))
        env = service_env(database_url, redis_url_or_none() or "memory://", LLM_PROVIDERS_FILE=str(providers),
                          LOCAL_LLM_KEY=UPSTREAM_KEY, WRONG_LLM_KEY="not-the-upstream-credential",
                          GUNICORN_CMD_ARGS="--worker-class gthread --threads 8",
                          GUNICORN_LOG=str(tmp / "gunicorn-{port}.log"))
        run_migrations(env)
        seeder = Seeder(env)
        try:
            with gunicorn_master(env, workers=WORKERS) as master:
                yield Gateway(master, seeder, upstream, tmp)
        finally:
            seeder.close()


class Gateway:
    def __init__(self, master, seeder, upstream, tmp):
        self.master, self.base, self.seeder, self.upstream, self.tmp = master, master.base, seeder, upstream, tmp
        admin_id, _ = seeder.user("gateway-admin@example.com", admin=True)
        self.verifier = {"X-API-Key": seeder.key(admin_id, scopes=["keys:verify"])}
        self.count = 0

    def key(self, scopes=("llm:*",), **attributes) -> str:
        self.count += 1
        owner_id, _ = self.seeder.user(f"gateway-{self.count}@example.com")
        return self.seeder.key(owner_id, scopes=list(scopes), **attributes)

    def sdk(self, secret) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.base}/llm/v1", api_key=secret, max_retries=0)

    def budget_used(self, secret) -> int:
        answer = requests.post(f"{self.base}/v1/api-keys/verify", json={"key": secret, "cost": 0},
                               headers=self.verifier, timeout=10).json()
        return answer["meta"]["budget"]["used"]

    def logs(self) -> str:
        return "".join(path.read_text() for path in self.tmp.glob("gunicorn-*.log"))


def prompt_estimate(messages) -> int:
    return math.ceil(len(json.dumps(messages, ensure_ascii=False)) / 4)


HELLO = [{"role": "user", "content": "say hello"}]


def test_a_chat_completion_is_charged_the_tokens_the_upstream_reports(gateway):
    secret = gateway.key(budget_limit=5000, budget_period="month")
    answer = gateway.sdk(secret).chat.completions.create(model="local/tiny", messages=HELLO)
    assert answer.choices[0].message.content == "hello from upstream" and answer.model == "local/tiny"
    assert answer.usage.prompt_tokens == 2 and answer.usage.completion_tokens == 3
    assert gateway.budget_used(secret) == 5
    received = gateway.upstream.requests[-1]
    assert received["body"]["model"] == "tiny" and received["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    # The gateway asks for no compression (a stream is relayed byte for byte) and keeps no cookie jar.
    assert received["headers"].get("accept-encoding", "identity") == "identity" and "cookie" not in received["headers"]


def test_an_alias_names_the_same_model(gateway):
    answer = gateway.sdk(gateway.key()).chat.completions.create(model="small", messages=HELLO)
    assert answer.choices[0].message.content == "hello from upstream"


def test_a_stream_arrives_chunk_by_chunk_and_is_charged_its_reported_usage(gateway):
    secret = gateway.key(budget_limit=5000, budget_period="month")
    stream = gateway.sdk(secret).chat.completions.create(
        model="local/tiny", messages=[{"role": "user", "content": "words:12"}], stream=True)
    chunks = [chunk for chunk in stream]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == " ".join(f"w{n}" for n in range(12))
    assert {chunk.model for chunk in chunks} == {"local/tiny"}  # as the caller named it, as in plain answers
    assert gateway.upstream.requests[-1]["body"]["stream_options"] == {"include_usage": True}
    assert gateway.budget_used(secret) == 1 + 12  # "words:12" is one prompt word


def test_a_relayed_stream_passes_each_event_on_once_it_is_whole():
    events = proxy._Events("local/tiny")
    first = b'data: {"model": "tiny", "choices": [{"delta": {"content": "a"}}]}\r\n\r\ndata: {"mod'
    assert events.feed(first) == b'data: {"model":"local/tiny","choices":[{"delta":{"content":"a"}}]}\n\n'
    assert events.feed(b'el": "tiny", "usage": {"prompt_tokens": 1}}\n') == b""  # not whole yet
    assert events.feed(b"\n: a comment\ndata: not json\n\ndata: [DONE]\n\n") == (
        b'data: {"model":"local/tiny","usage":{"prompt_tokens":1}}\n\n: a comment\ndata: not json\n\n'
        b"data: [DONE]\n\n")
    assert (events.usage, events.content_chunks, events.rest()) == ({"prompt_tokens": 1}, 1, b"")
    assert events.feed(b"data: cut") == b"" and events.rest() == b"data: cut"


def test_embeddings_and_their_cost(gateway):
    secret = gateway.key(budget_limit=400, budget_period="month")
    answer = gateway.sdk(secret).embeddings.create(model="local/embed", input=["one two", "three"])
    assert [item.embedding for item in answer.data] == [[0.1, 0.2, 0.3]] * 2
    assert gateway.budget_used(secret) == 3


def test_models_lists_what_the_key_may_use_and_the_scope_is_per_model(gateway):
    narrow = gateway.key(scopes=["llm:local:tiny"])
    assert [model.id for model in gateway.sdk(narrow).models.list()] == ["local/tiny"]
    assert sorted(model.id for model in gateway.sdk(gateway.key()).models.list()) == [
        "local/embed", "local/tiny", "misconfigured/tiny"]
    with pytest.raises(openai.PermissionDeniedError) as refused:
        gateway.sdk(narrow).embeddings.create(model="local/embed", input="x")
    assert refused.value.body["code"] == "model_not_allowed"
    with pytest.raises(openai.NotFoundError):
        gateway.sdk(narrow).chat.completions.create(model="local/missing", messages=HELLO)
    assert gateway.sdk(gateway.key(scopes=["keys:read"])).models.list().data == []


def test_refused_keys(gateway):
    with pytest.raises(openai.AuthenticationError) as unknown:
        gateway.sdk("lk_" + "A" * 38).chat.completions.create(model="local/tiny", messages=HELLO)
    assert unknown.value.body["code"] == "invalid_api_key"
    revoked = gateway.key(status="revoked")
    with pytest.raises(openai.AuthenticationError):
        gateway.sdk(revoked).chat.completions.create(model="local/tiny", messages=HELLO)
    fenced = gateway.key(allowed_ips=["10.0.0.0/8"])
    with pytest.raises(openai.PermissionDeniedError):
        gateway.sdk(fenced).chat.completions.create(model="local/tiny", messages=HELLO)


def test_a_budget_refuses_a_call_whose_estimate_does_not_fit(gateway):
    secret = gateway.key(budget_limit=30, budget_period="month")  # the estimate: prompt + max_tokens (64)
    with pytest.raises(openai.RateLimitError) as refused:
        gateway.sdk(secret).chat.completions.create(model="local/tiny", messages=HELLO)
    assert refused.value.body["code"] == "insufficient_quota" and gateway.budget_used(secret) == 0
    answer = gateway.sdk(secret).chat.completions.create(model="local/tiny", messages=HELLO, max_tokens=5)
    assert answer.choices[0].message.content == "hello from upstream" and gateway.budget_used(secret) == 5


def test_a_stream_that_ends_past_the_budget_is_settled_at_what_it_used(gateway):
    """The estimate (the prompt's, and the model's max_tokens: 64) fits the budget; the stream, with
    no max_tokens of its own, uses more than is left: it is charged exactly what the upstream
    reports, past the budget, and the next call is refused."""
    secret = gateway.key(budget_limit=80, budget_period="month")
    messages = [{"role": "user", "content": "words:100"}]
    assert prompt_estimate(messages) + 64 <= 80
    stream = gateway.sdk(secret).chat.completions.create(model="local/tiny", messages=messages, stream=True)
    assert sum(1 for chunk in stream if chunk.choices and chunk.choices[0].delta.content) == 100
    assert gateway.budget_used(secret) == 1 + 100
    with pytest.raises(openai.RateLimitError):
        gateway.sdk(secret).chat.completions.create(model="local/tiny", messages=HELLO, max_tokens=1)


@pytest.mark.parametrize("script, error, status", [
    ("fail:429", openai.RateLimitError, 429), ("fail:500", openai.InternalServerError, 500),
    ("hang:5", openai.APIStatusError, 504)])
def test_upstream_errors_are_openai_errors_and_cost_nothing_unless_the_work_may_have_been_done(gateway, script,
                                                                                              error, status):
    secret = gateway.key(budget_limit=1000, budget_period="month")
    with pytest.raises(error) as raised:
        gateway.sdk(secret).chat.completions.create(model="local/tiny", messages=[{"role": "user", "content": script}])
    assert raised.value.status_code == status and isinstance(raised.value.body, dict)
    expected = prompt_estimate([{"role": "user", "content": script}]) + 64 if status == 504 else 0
    assert gateway.budget_used(secret) == expected  # a timeout may have been billed: its estimate stays


def test_a_client_that_leaves_a_stream_cancels_the_upstream_and_is_charged_what_was_streamed(gateway):
    secret = gateway.key(budget_limit=1000, budget_period="month")
    messages = [{"role": "user", "content": "words:60 delay:0.1"}]
    body = {"model": "local/tiny", "messages": messages, "stream": True}
    with httpx.stream("POST", f"{gateway.base}/llm/v1/chat/completions", json=body, timeout=10,
                      headers={"Authorization": f"Bearer {secret}"}) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        received = [line for _, line in zip(range(8), lines, strict=False)]
    assert any("w0" in line for line in received)
    assert gateway.upstream.wait_for_disconnect(10)
    charged = gateway.budget_used(secret)
    assert prompt_estimate(messages) < charged < prompt_estimate(messages) + 64  # what was streamed, no more


def test_a_graceful_reload_lets_a_stream_end_and_settles_and_counts_it(gateway):
    owner_id, token = gateway.seeder.user("gateway-reload@example.com")
    secret = gateway.seeder.key(owner_id, scopes=["llm:*"], budget_limit=5000, budget_period="month")
    body = {"model": "local/tiny", "messages": [{"role": "user", "content": "words:20 delay:0.1"}], "stream": True}
    old_workers, reloaded = gateway.master.worker_pids(), {}
    with httpx.stream("POST", f"{gateway.base}/llm/v1/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {secret}"}) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        events = [line for _, line in zip(range(6), lines, strict=False)]
        reloader = threading.Thread(target=lambda: reloaded.update(workers=gateway.master.reload(WORKERS)))
        reloader.start()  # SIGHUP while the stream has 1.5 s to go: its worker stops once it has ended
        events += list(lines)
    reloader.join(60)
    assert reloaded["workers"] and not reloaded["workers"] & old_workers
    chunks = [json.loads(line[5:]) for line in events if line.startswith("data: {")]
    text = "".join(choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"])
    assert text == " ".join(f"w{n}" for n in range(20)) and [line for line in events if line][-1] == "data: [DONE]"
    if redis_url_or_none():  # on memory:// the budget lived in the stopped worker
        assert gateway.budget_used(secret) == 2 + 20  # the usage it reported, settled by the worker that stopped
    session = {"Authorization": f"Bearer {token}"}
    expected = {"local/tiny": {"requests": 1, "cost": 22, "input-tokens": 2, "output-tokens": 20}}
    wait_until(lambda: requests.get(f"{gateway.base}/v1/usage", headers=session, timeout=10).json()["data"][
        "attributes"]["by-model"] == expected, 10, "the stopped worker's usage written")


@pytest.mark.skipif(redis_url_or_none() is None, reason="needs RATELIMIT_STORAGE_URI=redis://...")
def test_concurrent_streams_on_four_workers_never_pass_a_budget(gateway):
    secret = gateway.key(budget_limit=500, budget_period="month")
    messages = [{"role": "user", "content": "words:10 delay:0.05"}]
    estimate = prompt_estimate(messages) + 40

    def one(_):
        try:
            stream = gateway.sdk(secret).chat.completions.create(model="local/tiny", messages=messages, stream=True,
                                                                 max_tokens=40)
            return sum(1 for _ in stream) and "streamed"
        except openai.RateLimitError:
            return "refused"

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(one, range(40)))
    streamed = outcomes.count("streamed")
    assert streamed >= 500 // estimate and outcomes.count("refused") == 40 - streamed
    assert gateway.budget_used(secret) == streamed * (2 + 10) <= 500  # each settled at its actual cost


def test_no_upstream_credential_or_key_in_the_logs(gateway):
    secret = gateway.key()
    gateway.sdk(secret).chat.completions.create(model="local/tiny", messages=HELLO)
    with pytest.raises(openai.InternalServerError):
        gateway.sdk(secret).chat.completions.create(model="local/tiny",
                                                    messages=[{"role": "user", "content": "fail:500"}])
    logs = gateway.logs()
    assert "POST /llm/v1/chat/completions" in logs
    assert UPSTREAM_KEY not in logs and secret not in logs


@pytest.mark.parametrize("body, message", [
    ({"model": "local/tiny"}, "messages must be a non-empty array."),
    ({"model": "local/tiny", "messages": HELLO, "max_tokens": 0}, "max_tokens must be a whole number above 0."),
    ({"model": "local/tiny", "messages": HELLO, "stream": True, "stream_options": []},
     "stream_options must be an object."),
    ({"model": "local/embed"}, None),
])
def test_bad_requests_are_400_openai_errors_and_reach_no_upstream(gateway, body, message):
    before = len(gateway.upstream.requests)
    path = "embeddings" if body["model"] == "local/embed" else "chat/completions"
    response = requests.post(f"{gateway.base}/llm/v1/{path}", json=body, timeout=10,
                             headers={"Authorization": f"Bearer {gateway.key()}"})
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"
    assert message is None or response.json()["error"]["message"] == message
    assert len(gateway.upstream.requests) == before


def test_usage_shows_tokens_and_cost_per_model(gateway):
    owner_id, token = gateway.seeder.user("gateway-usage@example.com")
    secret = gateway.seeder.key(owner_id, scopes=["llm:*"], budget_limit=5000, budget_period="month")
    sdk = gateway.sdk(secret)
    sdk.chat.completions.create(model="local/tiny", messages=HELLO)  # 2 in, 3 out
    list(sdk.chat.completions.create(model="small", messages=[{"role": "user", "content": "words:7"}], stream=True))
    sdk.embeddings.create(model="local/embed", input="one two three")  # 3 in
    key_id = gateway.seeder.key_id(secret)
    session = {"Authorization": f"Bearer {token}"}

    def by_model():
        summary = requests.get(f"{gateway.base}/v1/usage", headers=session, timeout=10).json()
        return summary["data"]["attributes"]["by-model"]

    expected = {"local/embed": {"requests": 1, "cost": 3, "input-tokens": 3, "output-tokens": 0},
                "local/tiny": {"requests": 2, "cost": 5 + 8, "input-tokens": 2 + 1, "output-tokens": 3 + 7}}
    wait_until(lambda: by_model() == expected, 10, "every worker's usage written")
    series = requests.get(f"{gateway.base}/v1/api-keys/{key_id}/usage", headers=session, timeout=10).json()
    assert series["data"]["attributes"]["series"][-1]["models"] == expected


def test_a_provider_refusing_the_gateways_credential_is_a_502_that_quotes_nothing_of_it(gateway):
    secret = gateway.key(budget_limit=5000, budget_period="month")  # its model's default max_tokens: 1024
    with pytest.raises(openai.APIStatusError) as raised:
        gateway.sdk(secret).chat.completions.create(model="misconfigured/tiny", messages=HELLO)
    assert raised.value.status_code == 502 and raised.value.body["code"] == "upstream_credential_refused"
    assert "not-the-upstream-credential" not in json.dumps(raised.value.body)
    assert gateway.budget_used(secret) == 0
    assert "not-the-upstream-credential" not in gateway.logs()


def test_several_choices_reserve_their_output_several_times(gateway):
    secret = gateway.key(budget_limit=100, budget_period="month")  # one answer's estimate fits, three do not
    with pytest.raises(openai.RateLimitError):
        gateway.sdk(secret).chat.completions.create(model="local/tiny", messages=HELLO, n=3)
    assert gateway.sdk(secret).chat.completions.create(model="local/tiny", messages=HELLO, n=1).choices


def test_a_stream_without_reported_usage_is_charged_the_prompts_estimate_and_a_token_per_chunk(gateway):
    secret = gateway.key(budget_limit=1000, budget_period="month")
    messages = [{"role": "user", "content": "words:9 nousage"}]
    chunks = list(gateway.sdk(secret).chat.completions.create(model="local/tiny", messages=messages, stream=True))
    assert not any(chunk.usage for chunk in chunks)
    assert gateway.budget_used(secret) == prompt_estimate(messages) + 9
    assert "no usage reported" in gateway.logs()


def test_routing_errors_and_sessions_get_openai_errors(gateway):
    wrong_method = requests.get(f"{gateway.base}/llm/v1/chat/completions", timeout=10)
    assert wrong_method.status_code == 405 and wrong_method.headers["Allow"] == "OPTIONS, POST"
    assert wrong_method.json()["error"]["type"] == "invalid_request_error"
    missing = requests.post(f"{gateway.base}/llm/v1/completions", json={}, timeout=10)
    assert missing.status_code == 404 and "error" in missing.json()
    owner_id, token = gateway.seeder.user("gateway-session@example.com")
    session = requests.get(f"{gateway.base}/llm/v1/models", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert session.status_code == 401
    assert session.json()["error"]["message"] == "The gateway takes Latchkey API keys only."
    assert requests.get(f"{gateway.base}/v1/nothing", timeout=10).json()["errors"][0]["status"] == "404"  # JSON:API


def test_a_key_in_its_rotation_grace_reaches_the_gateway_until_the_grace_ends(gateway):
    owner_id, token = gateway.seeder.user("gateway-rotation@example.com")
    old = gateway.seeder.key(owner_id, scopes=["llm:*"])
    key_id = gateway.seeder.key_id(old)
    rotated = requests.post(f"{gateway.base}/v1/api-keys/{key_id}/rotate", timeout=10, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/vnd.api+json"},
        json={"data": {"type": "api-keys", "attributes": {"grace-period": 2}}})
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()["data"]["attributes"]["secret"]
    for secret in (old, new):
        assert gateway.sdk(secret).chat.completions.create(model="local/tiny", messages=HELLO).choices
    time.sleep(2.1)  # the grace is over on every worker: it is compared with the clock at every check
    with pytest.raises(openai.AuthenticationError):
        gateway.sdk(old).chat.completions.create(model="local/tiny", messages=HELLO)
    assert gateway.sdk(new).chat.completions.create(model="local/tiny", messages=HELLO).choices
