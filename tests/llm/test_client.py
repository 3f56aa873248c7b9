"""LLMClient against the fake OpenAI server over real HTTP (sync tests, asyncio.run inside)."""

from __future__ import annotations

import asyncio
import email.utils
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.llm import CallRecord, LLMClient, LLMError
from qdsearch.llm.client import response_format, retry_after_s
from tests.fakes.openai_server import EMBED_DIM, FakeOpenAI, Faults, Reply, fake_embedding
from tests.helpers import endpoint as cfg
from tests.helpers import run_client as run

T = TypeVar("T")
MSG = [{"role": "user", "content": "say hello"}]
Make = Callable[..., FakeOpenAI]


def run_many(client: LLMClient, n: int, messages: Callable[[int], list[dict[str, str]]] = lambda i: MSG) -> list[Any]:
    async def many() -> list[Any]:
        return await asyncio.gather(*(client.chat(messages(i), tag=f"t{i}") for i in range(n)))

    return run(client, many())


# ------------------------------------------------------------------ completions and accounting


def test_completion_and_accounting(fake_openai: Make) -> None:
    fake = fake_openai()
    fake.script([Reply("hello there", prompt_tokens=11, completion_tokens=2)])
    seen: list[CallRecord] = []
    client = LLMClient(cfg(fake.base_url, price_in_per_mtok=1e6, price_out_per_mtok=2e6), on_call=seen.append)
    comp = run(client, client.chat(MSG, tag="respond"))
    assert comp.text == "hello there" and comp.finish_reason == "stop"
    r = comp.record
    assert (r.tag, r.model, r.prompt_tokens, r.completion_tokens) == ("respond", "fake-model", 11, 2)
    assert (r.attempts, r.outcome, r.ok, r.finish_reason, r.tokens) == (1, "ok", True, "stop", 13)
    assert r.latency_s > 0 and r.cost_usd == pytest.approx(11 * 1 + 2 * 2)
    assert seen == [r]
    assert client.usage.calls == 1 and client.usage.tokens == 13 and client.usage.outcomes == {"ok": 1}
    # what went over the wire
    req = fake.requests[-1]
    assert req["model"] == "fake-model" and req["messages"] == MSG
    assert req["max_tokens"] == 512 and req["temperature"] == pytest.approx(0.8)
    assert "response_format" not in req and "seed" not in req


def test_request_overrides_and_truncation(fake_openai: Make) -> None:
    fake = fake_openai()
    fake.script([Reply("cut sho", finish_reason="length")])
    client = LLMClient(cfg(fake.base_url))
    comp = run(client, client.chat(MSG, temperature=0.0, max_tokens=7, seed=42))
    assert comp.text == "cut sho" and comp.finish_reason == "length" and comp.record.finish_reason == "length"
    req = fake.requests[-1]
    assert (req["temperature"], req["max_tokens"], req["seed"]) == (0.0, 7, 42)


def test_default_responder_echoes_last_user_message(fake_openai: Make) -> None:
    fake = fake_openai()
    client = LLMClient(cfg(fake.base_url))
    msgs = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "alpha beta gamma"},
        {"role": "assistant", "content": "ok"},
    ]
    comp = run(client, client.chat(msgs))
    assert comp.text == "alpha beta gamma"
    # default token counts: words of all messages in, words of the content out
    assert (comp.record.prompt_tokens, comp.record.completion_tokens) == (6, 3)


def test_usage_totals_over_calls(fake_openai: Make) -> None:
    fake = fake_openai()
    seen: list[CallRecord] = []
    client = LLMClient(cfg(fake.base_url, price_in_per_mtok=1.0, price_out_per_mtok=3.0), on_call=seen.append)
    comps = run_many(client, 5, lambda i: [{"role": "user", "content": " ".join(["w"] * (i + 1))}])
    assert [c.text for c in comps] == [" ".join(["w"] * (i + 1)) for i in range(5)]
    u = client.usage
    assert (u.calls, u.failed, u.attempts, u.outcomes) == (5, 0, 5, {"ok": 5})
    assert u.prompt_tokens == u.completion_tokens == 1 + 2 + 3 + 4 + 5
    assert u.tokens == 30 and u.cost_usd == pytest.approx((15 * 1.0 + 15 * 3.0) / 1e6)
    assert sorted(r.tag for r in seen) == [f"t{i}" for i in range(5)]
    assert u.prompt_tokens == sum(r.prompt_tokens for r in seen)


# ------------------------------------------------------------------ retries


@pytest.mark.parametrize("status", [429, 500, 503])
def test_retries_then_succeeds(fake_openai: Make, status: int) -> None:
    fake = fake_openai()
    fake.script([Reply(status=status), "fine"])
    client = LLMClient(cfg(fake.base_url))
    comp = run(client, client.chat(MSG))
    assert comp.text == "fine" and comp.record.attempts == 2 and comp.record.outcome == "ok"
    assert fake.stats == {str(status): 1, "ok": 1} and len(fake.requests) == 2
    assert client.usage.attempts == 2 and client.usage.failed == 0


def test_retry_after_is_honoured(fake_openai: Make) -> None:
    fake = fake_openai()
    fake.script([Reply(status=429, headers={"Retry-After": "1"}), "ok"])
    client = LLMClient(cfg(fake.base_url, backoff_s=0.001))
    t = time.perf_counter()
    comp = run(client, client.chat(MSG))
    elapsed = time.perf_counter() - t
    assert comp.record.attempts == 2 and 0.9 <= elapsed < 5
    assert comp.record.latency_s >= 0.9  # backoff counts into the call's latency


def test_retry_after_is_capped_by_max_backoff(fake_openai: Make) -> None:
    fake = fake_openai()
    fake.script([Reply(status=429, headers={"Retry-After": "60"}), "ok"])
    client = LLMClient(cfg(fake.base_url, max_backoff_s=0.2))
    t = time.perf_counter()
    comp = run(client, client.chat(MSG))
    assert comp.record.attempts == 2 and 0.15 <= time.perf_counter() - t < 3


def test_fault_429_carries_retry_after(fake_openai: Make) -> None:
    fake = fake_openai(faults=Faults(p_429=1.0, retry_after="0.3"))
    client = LLMClient(cfg(fake.base_url, backoff_s=0.001, max_retries=2))
    t = time.perf_counter()
    with pytest.raises(LLMError) as ei:
        run(client, client.chat(MSG))
    assert ei.value.record.outcome == "http_429" and ei.value.record.attempts == 3
    assert time.perf_counter() - t >= 0.55  # two waits of 0.3 s, not of ~1 ms
    assert fake.stats == {"429": 3}


def test_retries_exhausted(fake_openai: Make) -> None:
    fake = fake_openai(faults=Faults(p_500=1.0))
    seen: list[CallRecord] = []
    client = LLMClient(cfg(fake.base_url, max_retries=2), on_call=seen.append)
    with pytest.raises(LLMError) as ei:
        run(client, client.chat(MSG, tag="judge"))
    rec = ei.value.record
    assert (rec.outcome, rec.attempts, rec.tag, rec.ok, rec.tokens) == ("http_500", 3, "judge", False, 0)
    assert "judge" in str(ei.value) and "3 attempt(s)" in str(ei.value)
    assert seen == [rec] and client.usage.failed == 1 and client.usage.outcomes == {"http_500": 1}
    assert fake.stats == {"500": 3}


def test_no_retries_when_max_retries_is_zero(fake_openai: Make) -> None:
    fake = fake_openai()
    fake.script([Reply(status=503), "never reached"])
    client = LLMClient(cfg(fake.base_url, max_retries=0))
    with pytest.raises(LLMError) as ei:
        run(client, client.chat(MSG))
    assert ei.value.record.attempts == 1 and ei.value.record.outcome == "http_503" and len(fake.requests) == 1


def test_non_retryable_and_key_never_shown(fake_openai: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-canary-" + "9" * 30
    monkeypatch.setenv("QDS_TEST_KEY", key)
    fake = fake_openai()
    fake.script([Reply(status=401), Reply(status=400), Reply(status=404)])
    client = LLMClient(cfg(fake.base_url, api_key_env="QDS_TEST_KEY", max_retries=5))

    async def calls() -> list[LLMError]:
        errs = []
        for _ in range(3):
            try:
                await client.chat(MSG)
            except LLMError as e:
                errs.append(e)
        return errs

    e401, e400, e404 = run(client, calls())
    assert e401.record.attempts == 1 and e401.record.outcome == "http_401"
    assert "$QDS_TEST_KEY" in str(e401) and key not in str(e401) and key not in repr(e401.record)
    assert e400.record.attempts == 1 and e400.record.outcome == "http_400"
    assert e404.record.attempts == 1 and e404.record.outcome == "http_404"
    assert len(fake.requests) == 3 and client.usage.failed == 3
    assert fake.auth_headers == [f"Bearer {key}"] * 3


def test_api_key_from_env_reaches_server_only(fake_openai: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-canary-4f1d2c7e9b"
    monkeypatch.setenv("QDS_TEST_KEY", key)
    fake = fake_openai()
    client = LLMClient(cfg(fake.base_url, api_key_env="QDS_TEST_KEY"))
    comp = run(client, client.chat(MSG))
    assert fake.auth_headers == [f"Bearer {key}"]
    for text in (repr(client), str(client), repr(client.cfg), str(vars(client)), repr(comp), repr(client.usage)):
        assert key not in text


def test_missing_key_env_sends_placeholder(fake_openai: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QDS_TEST_KEY", raising=False)
    fake = fake_openai()
    client = LLMClient(cfg(fake.base_url, api_key_env="QDS_TEST_KEY"))
    run(client, client.chat(MSG))
    assert fake.auth_headers == ["Bearer EMPTY"]


def test_timeout_on_hanging_server(fake_openai: Make) -> None:
    fake = fake_openai(faults=Faults(p_hang=1.0, hang_s=20))
    client = LLMClient(cfg(fake.base_url, timeout_s=0.5, max_retries=1))
    t = time.perf_counter()
    with pytest.raises(LLMError) as ei:
        run(client, client.chat(MSG))
    elapsed = time.perf_counter() - t
    assert ei.value.record.outcome == "timeout" and ei.value.record.attempts == 2
    assert 0.9 <= elapsed < 3  # two 0.5 s attempts, far below hang_s
    assert fake.stats == {"hang": 2}


def test_malformed_body_is_retried(fake_openai: Make) -> None:
    fake = fake_openai()
    fake.script([Reply(raw_body='{"id": "x", "choi'), Reply(raw_body="<html>bad gateway</html>"), "good"])
    client = LLMClient(cfg(fake.base_url))
    comp = run(client, client.chat(MSG))
    assert comp.text == "good" and comp.record.attempts == 3 and fake.stats == {"malformed": 2, "ok": 1}


def test_malformed_faults_exhaust_retries(fake_openai: Make) -> None:
    fake = fake_openai(faults=Faults(p_malformed=1.0))
    client = LLMClient(cfg(fake.base_url, max_retries=2))
    with pytest.raises(LLMError) as ei:
        run(client, client.chat(MSG))
    assert ei.value.record.outcome == "bad_response" and ei.value.record.attempts == 3


def test_connection_refused_is_retried_then_fails(fake_openai: Make) -> None:
    fake = fake_openai()
    url = fake.base_url
    fake.stop()  # nothing listens on the port any more
    client = LLMClient(cfg(url, max_retries=1))
    with pytest.raises(LLMError) as ei:
        run(client, client.chat(MSG))
    assert ei.value.record.outcome == "connection" and ei.value.record.attempts == 2


def test_concurrency_limit(fake_openai: Make) -> None:
    fake = fake_openai(latency_s=0.2)
    client = LLMClient(cfg(fake.base_url, concurrency=2))
    t = time.perf_counter()
    comps = run_many(client, 6)
    assert len(comps) == 6 and fake.max_in_flight == 2
    assert time.perf_counter() - t >= 0.55  # three waves of two


def test_faulty_endpoint_all_calls_complete(fake_openai: Make) -> None:
    def campaign() -> tuple[dict[str, int], int]:
        fake = fake_openai(faults=Faults(p_429=0.15, p_500=0.15), seed=7)
        # timeout_s = 60: on a loaded machine a 5 s timeout adds retries no fault injected
        client = LLMClient(cfg(fake.base_url, max_retries=8, backoff_s=0.01, concurrency=8, timeout_s=60.0))
        comps = run_many(client, 40)
        assert len(comps) == 40 and all(c.record.ok for c in comps)
        assert client.usage.failed == 0 and fake.stats["ok"] == 40
        injected = fake.stats.get("429", 0) + fake.stats.get("500", 0)
        assert injected > 0
        assert client.usage.attempts == sum(c.record.attempts for c in comps) == 40 + injected
        return dict(fake.stats), injected

    # the faults come from a seeded RNG: a second campaign sees exactly the same ones
    assert campaign() == campaign()


# ------------------------------------------------------------------ JSON output


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("json_object", {"type": "json_object", "schema": {"type": "object"}}),
        ("json_schema", {"type": "json_schema", "json_schema": {"name": "output", "schema": {"type": "object"}}}),
        ("auto", {"type": "json_schema", "json_schema": {"name": "output", "schema": {"type": "object"}}}),
        ("none", None),
    ],
)
def test_json_modes_on_the_wire(fake_openai: Make, mode: str, expected: Any) -> None:
    fake = fake_openai()
    fake.script([json.dumps({"a": 1})])
    client = LLMClient(cfg(fake.base_url, json_mode=mode))
    comp = run(client, client.chat(MSG, json_schema={"type": "object"}))
    assert fake.requests[-1].get("response_format") == expected
    assert json.loads(comp.text) == {"a": 1}


def test_no_response_format_without_schema(fake_openai: Make) -> None:
    fake = fake_openai()
    client = LLMClient(cfg(fake.base_url, json_mode="json_object"))
    run(client, client.chat(MSG))
    assert "response_format" not in fake.requests[-1]


def test_response_format_helper() -> None:
    schema = {"type": "object", "properties": {"q": {"type": "integer"}}}
    assert response_format("none", schema) is None
    assert response_format("json_object", schema) == {"type": "json_object", "schema": schema}
    assert response_format("json_schema", schema, name="verdict") == {
        "type": "json_schema",
        "json_schema": {"name": "verdict", "schema": schema},
    }


# ------------------------------------------------------------------ embeddings


def _expected(texts: list[str]) -> np.ndarray:
    v = np.asarray([fake_embedding(t) for t in texts], dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("reverse", [False, True])
def test_embeddings(fake_openai: Make, reverse: bool) -> None:
    fake = fake_openai()
    fake.reverse_embeddings = reverse  # items out of order on the wire: the client sorts by index
    seen: list[CallRecord] = []
    client = LLMClient(cfg(fake.base_url), on_call=seen.append)
    texts = ["a", "b c", "a", "déjà vu"]
    v = run(client, client.embed(texts))
    assert v.shape == (4, EMBED_DIM) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.allclose(v, _expected(texts), atol=1e-6)
    assert not np.allclose(v[0], v[1])
    assert [(r.tag, r.outcome, r.attempts, r.prompt_tokens) for r in seen] == [("embed", "ok", 1, 6)]


def test_embed_empty_makes_no_request(fake_openai: Make) -> None:
    fake = fake_openai()
    client = LLMClient(cfg(fake.base_url))
    v = run(client, client.embed([]))
    assert v.shape[0] == 0 and v.dtype == np.float32 and client.usage.calls == 0


class _FlakyEmbeddings(FakeOpenAI):
    """Answers the first ``bad`` embedding requests with a truncated body."""

    def __init__(self, bad: int) -> None:
        super().__init__()
        self.bad = bad
        self.embed_calls = 0

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        self.embed_calls += 1
        if self.embed_calls <= self.bad:
            await request.read()
            return web.Response(status=200, text='{"object": "list", "data": [{"emb', content_type="application/json")
        return await super()._embeddings(request)


def test_embed_malformed_body_is_retried_then_fails() -> None:
    with _FlakyEmbeddings(bad=1) as fake:
        client = LLMClient(cfg(fake.base_url))
        v = run(client, client.embed(["x", "y"]))
        assert np.allclose(v, _expected(["x", "y"]), atol=1e-6) and fake.embed_calls == 2
    with _FlakyEmbeddings(bad=99) as fake:
        client = LLMClient(cfg(fake.base_url, max_retries=1))
        with pytest.raises(LLMError) as ei:
            run(client, client.embed(["x"]))
        assert (ei.value.record.tag, ei.value.record.outcome, ei.value.record.attempts) == ("embed", "bad_response", 2)


# ------------------------------------------------------------------ Retry-After parsing


def test_retry_after_parsing() -> None:
    assert retry_after_s({"retry-after": "2"}) == 2.0
    assert retry_after_s({"retry-after": " 1.5 "}) == 1.5
    assert retry_after_s({"retry-after-ms": "1500"}) == 1.5
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25  # ms wins
    assert retry_after_s({"retry-after-ms": "junk", "retry-after": "9"}) == 9.0  # falls back
    assert retry_after_s({"retry-after": "-3"}) == 0.0
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({"retry-after": ""}) is None
    assert retry_after_s({}) is None and retry_after_s(None) is None


def test_retry_after_http_date() -> None:
    future = email.utils.formatdate(time.time() + 30, usegmt=True)  # e.g. "Wed, 21 Oct 2015 07:28:00 GMT"
    got = retry_after_s({"retry-after": future})
    assert got is not None and 28.0 <= got <= 30.5
    assert retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert retry_after_s({"retry-after": "Wed, 31 Feb 2015 07:28:00 GMT"}) is None  # no such day


_header_text = st.text() | st.from_regex(
    r"[A-Za-z]{0,3},? ?\d{0,3} [A-Za-z]{0,4} -?\d{0,6} \d{0,3}:\d{0,3}:\d{0,3} ?\S{0,5}"
)


@settings(max_examples=300, deadline=None)
@given(_header_text, _header_text)
def test_retry_after_never_raises(a: str, b: str) -> None:
    for headers in ({"retry-after": a}, {"retry-after-ms": b}, {"retry-after": a, "retry-after-ms": b}):
        got = retry_after_s(headers)
        assert got is None or (isinstance(got, float) and got >= 0.0)


# ------------------------------------------------------------------ the fake server itself


def test_fake_server_models_and_bad_request(fake_openai: Make) -> None:
    fake = fake_openai()
    with urllib.request.urlopen(f"{fake.base_url}/models", timeout=5) as r:
        assert [m["id"] for m in json.load(r)["data"]] == ["fake-model"]
    req = urllib.request.Request(f"{fake.base_url}/chat/completions", data=b"{not json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(req, timeout=5)
    assert ei.value.code == 400 and fake.requests == []


def test_fake_server_stops_while_a_request_hangs() -> None:
    fake = FakeOpenAI(faults=Faults(p_hang=1.0, hang_s=60)).start()
    body = json.dumps({"model": "m", "messages": MSG}).encode()
    outcome: list[object] = []

    def call() -> None:
        req = urllib.request.Request(f"{fake.base_url}/chat/completions", data=body, method="POST")
        try:
            urllib.request.urlopen(req, timeout=30)
            outcome.append("answered")
        except Exception as e:
            outcome.append(e)

    th = threading.Thread(target=call, daemon=True)
    th.start()
    deadline = time.monotonic() + 5
    while not fake.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.stats == {"hang": 1}
    t = time.perf_counter()
    fake.stop()
    assert time.perf_counter() - t < 3
    th.join(5)
    assert not th.is_alive() and outcome and outcome[0] != "answered"
    fake.stop()  # idempotent
