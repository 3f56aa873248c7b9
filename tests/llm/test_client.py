"""LLMClient against the fake OpenAI server over real HTTP."""

from __future__ import annotations

import asyncio
import email.utils
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qdsearch.config import EndpointConfig
from qdsearch.llm import CallRecord, LLMClient, LLMError
from qdsearch.llm.client import response_format, retry_after_s
from tests.fakes.openai_server import Faults, Reply

MSG = [{"role": "user", "content": "say hello"}]


def cfg(url: str, **kw: Any) -> EndpointConfig:
    base: dict[str, Any] = {"base_url": url, "model": "fake-model", "backoff_s": 0.01, "timeout_s": 5.0}
    return EndpointConfig(**(base | kw))


def run(client: LLMClient, coro: Any) -> Any:
    async def go() -> Any:
        try:
            return await coro
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_completion_and_accounting(fake_openai: Any) -> None:
    fake = fake_openai()
    fake.script([Reply("hello there", prompt_tokens=11, completion_tokens=2)])
    seen: list[CallRecord] = []
    client = LLMClient(cfg(fake.base_url, price_in_per_mtok=1e6, price_out_per_mtok=2e6), on_call=seen.append)
    comp = run(client, client.chat(MSG, tag="respond"))
    assert comp.text == "hello there" and comp.finish_reason == "stop"
    r = comp.record
    assert (r.tag, r.prompt_tokens, r.completion_tokens, r.attempts, r.outcome) == ("respond", 11, 2, 1, "ok")
    assert r.latency_s > 0 and r.cost_usd == pytest.approx(11 + 4)
    assert seen == [r]
    assert client.usage.calls == 1 and client.usage.tokens == 13


def test_usage_totals_over_calls(fake_openai: Any) -> None:
    fake = fake_openai()
    client = LLMClient(cfg(fake.base_url))

    async def many() -> list[Any]:
        return await asyncio.gather(*(client.chat([{"role": "user", "content": f"w{i} x"}]) for i in range(5)))

    comps = run(client, many())
    assert client.usage.calls == 5 and client.usage.failed == 0
    assert client.usage.completion_tokens == sum(c.record.completion_tokens for c in comps) == 10


@pytest.mark.parametrize("status", [429, 500, 503])
def test_retries_then_succeeds(fake_openai: Any, status: int) -> None:
    fake = fake_openai()
    fake.script([Reply(status=status), "fine"])
    client = LLMClient(cfg(fake.base_url))
    comp = run(client, client.chat(MSG))
    assert comp.text == "fine" and comp.record.attempts == 2 and comp.record.outcome == "ok"


def test_retry_after_is_honoured(fake_openai: Any) -> None:
    fake = fake_openai()
    fake.script([Reply(status=429, headers={"Retry-After": "1"}), "ok"])
    client = LLMClient(cfg(fake.base_url, backoff_s=0.001))
    t = time.perf_counter()
    run(client, client.chat(MSG))
    assert time.perf_counter() - t >= 0.9


def test_retries_exhausted(fake_openai: Any) -> None:
    fake = fake_openai(faults=Faults(p_500=1.0))
    client = LLMClient(cfg(fake.base_url, max_retries=2))
    with pytest.raises(LLMError) as ei:
        run(client, client.chat(MSG, tag="judge"))
    assert ei.value.record.outcome == "http_500" and ei.value.record.attempts == 3
    assert client.usage.failed == 1 and fake.stats["500"] == 3


def test_non_retryable_and_key_never_shown(fake_openai: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-canary-" + "9" * 30
    monkeypatch.setenv("QDS_TEST_KEY", key)
    fake = fake_openai()
    fake.script([Reply(status=401), Reply(status=400)])
    client = LLMClient(cfg(fake.base_url, api_key_env="QDS_TEST_KEY"))

    async def both() -> list[LLMError]:
        errs = []
        for _ in range(2):
            try:
                await client.chat(MSG)
            except LLMError as e:
                errs.append(e)
        return errs

    e401, e400 = run(client, both())
    assert e401.record.attempts == 1 and e401.record.outcome == "http_401"
    assert "$QDS_TEST_KEY" in str(e401) and key not in str(e401)
    assert e400.record.attempts == 1 and e400.record.outcome == "http_400"
    assert fake.auth_headers[0] == f"Bearer {key}"
    assert key not in repr(client) and key not in repr(client.cfg) and key not in str(vars(client))


def test_timeout_on_hanging_server(fake_openai: Any) -> None:
    fake = fake_openai(faults=Faults(p_hang=1.0, hang_s=20))
    client = LLMClient(cfg(fake.base_url, timeout_s=0.4, max_retries=1))
    t = time.perf_counter()
    with pytest.raises(LLMError) as ei:
        run(client, client.chat(MSG))
    assert ei.value.record.outcome == "timeout" and ei.value.record.attempts == 2
    assert time.perf_counter() - t < 3


def test_malformed_body_is_retried(fake_openai: Any) -> None:
    fake = fake_openai()
    fake.script([Reply(raw_body='{"id": "x", "choi'), "good"])
    client = LLMClient(cfg(fake.base_url))
    comp = run(client, client.chat(MSG))
    assert comp.text == "good" and comp.record.attempts == 2


def test_concurrency_limit(fake_openai: Any) -> None:
    fake = fake_openai(latency_s=0.15)
    client = LLMClient(cfg(fake.base_url, concurrency=2))

    async def many() -> None:
        await asyncio.gather(*(client.chat(MSG) for _ in range(6)))

    run(client, many())
    assert fake.max_in_flight == 2


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("json_object", {"type": "json_object", "schema": {"type": "object"}}),
        ("json_schema", {"type": "json_schema", "json_schema": {"name": "output", "schema": {"type": "object"}}}),
        ("auto", {"type": "json_schema", "json_schema": {"name": "output", "schema": {"type": "object"}}}),
        ("none", None),
    ],
)
def test_json_modes_on_the_wire(fake_openai: Any, mode: str, expected: Any) -> None:
    fake = fake_openai()
    client = LLMClient(cfg(fake.base_url, json_mode=mode))
    run(client, client.chat(MSG, json_schema={"type": "object"}))
    assert fake.requests[-1].get("response_format") == expected
    assert response_format("none", {}) is None


def test_embeddings(fake_openai: Any) -> None:
    fake = fake_openai()
    client = LLMClient(cfg(fake.base_url))
    v = run(client, client.embed(["a", "b", "a"]))
    assert v.shape == (3, 16) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.allclose(v[0], v[2]) and not np.allclose(v[0], v[1])


def test_faulty_endpoint_all_calls_complete(fake_openai: Any) -> None:
    fake = fake_openai(faults=Faults(p_429=0.15, p_500=0.15), seed=7)
    client = LLMClient(cfg(fake.base_url, max_retries=8, concurrency=8))

    async def many() -> list[Any]:
        return await asyncio.gather(*(client.chat(MSG) for _ in range(40)))

    comps = run(client, many())
    assert len(comps) == 40 and client.usage.failed == 0
    injected = fake.stats.get("429", 0) + fake.stats.get("500", 0)
    assert injected > 0
    assert client.usage.attempts == 40 + injected


def test_retry_after_parsing() -> None:
    assert retry_after_s({"retry-after": "2"}) == 2.0
    assert retry_after_s({"retry-after-ms": "1500"}) == 1.5
    assert retry_after_s({"retry-after": "-3"}) == 0.0
    when = email.utils.format_datetime(email.utils.localtime()).replace("+0000", "GMT")
    got = retry_after_s({"retry-after": when})
    assert got is not None and 0.0 <= got <= 1.0
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({}) is None and retry_after_s(None) is None


@given(st.text(), st.text())
def test_retry_after_never_raises(a: str, b: str) -> None:
    for headers in ({"retry-after": a}, {"retry-after-ms": b}, {"retry-after": a, "retry-after-ms": b}):
        got = retry_after_s(headers)
        assert got is None or got >= 0.0
