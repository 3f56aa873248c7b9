"""The batching transport (issue 18 part 2): the chat calls of callers running together go
out as one batch job, each caller's answer mapped back by custom id, priced at the batch
discount; lines that fail are retried in a later job, then asked as single calls, or fail
the call for good; a job logged before a crash is polled again, not paid again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.llm.batching import Batcher, Journal, as_completion, custom_id
from qdsearch.llm.cache import RequestCache, call_site
from qdsearch.llm.client import LLMClient, LLMError
from tests.fakes.batch_server import FakeBatches
from tests.helpers import endpoint

PRICE = {"price_in_per_mtok": 1.0, "price_out_per_mtok": 3.0}


@pytest.fixture
def server() -> Iterator[Any]:
    made: list[FakeBatches] = []

    def make(**kw: Any) -> FakeBatches:
        srv = FakeBatches(**kw).start()
        made.append(srv)
        return srv

    yield make
    for s in made:
        s.stop()


def _client(srv: FakeBatches, batcher: Batcher, **kw: Any) -> LLMClient:
    client = LLMClient(endpoint(srv.base_url, batch=True, batch_poll_s=0.01, **PRICE, **kw))
    client.batcher = batcher
    return client


def _ask(client: LLMClient, batcher: Batcher, prompts: list[str], tag: str = "judge") -> list[Any]:
    """Each prompt asked by a caller of its own (a job), all at once."""

    async def one(i: int, text: str) -> Any:
        with call_site(3, f"c{i:07d}"), batcher.caller():
            try:
                return await client.chat([{"role": "user", "content": text}], tag=tag)
            except LLMError as e:
                return e

    async def go() -> list[Any]:
        try:
            return list(await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts))))
        finally:
            await batcher.aclose()
            await client.aclose()

    return asyncio.run(go())


def test_callers_running_together_make_one_job_at_the_discount(server: Any) -> None:
    srv = server()
    batcher = Batcher(Journal((log := []).append))
    client = _client(srv, batcher)
    out = _ask(client, batcher, [f"task {i}" for i in range(12)])
    assert srv.created == 1 and srv.single_calls == 0
    assert [c.text for c in out] == [f"ok: task {i}" for i in range(12)]  # mapped back by custom id
    rec = out[0].record
    full = (rec.prompt_tokens * 1.0 + rec.completion_tokens * 3.0) / 1e6
    assert rec.outcome == "ok" and rec.attempts == 1 and rec.cost_usd == pytest.approx(0.5 * full)
    assert client.usage.cost_usd == pytest.approx(sum(c.record.cost_usd for c in out))
    kinds = [e["type"] for e in log]
    assert kinds == ["batch", "batch_done"]
    assert log[0]["id"] == "batch-1" and log[0]["lines"] == 12 and len(set(log[0]["custom_ids"])) == 12
    assert log[1] | {"time": 0} == {"type": "batch_done", "ids": ["batch-1"], "endpoint": srv.base_url,
                                    "lines": 12, "ok": 12, "retried": 0, "single": 0, "failed": 0, "time": 0}  # fmt: skip
    assert batcher.stats["jobs"] == 1 and batcher.stats["ok"] == 12


def test_the_discount_is_the_configured_share(server: Any) -> None:
    srv = server()
    batcher = Batcher()
    out = _ask(_client(srv, batcher, batch_discount=0.25), batcher, ["a b c"])
    rec = out[0].record
    assert rec.cost_usd == pytest.approx(0.25 * (rec.prompt_tokens + 3 * rec.completion_tokens) / 1e6)


def test_a_caller_held_up_elsewhere_does_not_hold_the_job_forever(server: Any) -> None:
    srv = server()
    batcher = Batcher(quiet_s=0.2)
    client = _client(srv, batcher)

    async def go() -> list[str]:
        async def asks() -> str:
            with call_site(3, "c0000000"), batcher.caller():
                return (await client.chat([{"role": "user", "content": "x"}], tag="judge")).text

        async def stuck() -> None:
            with batcher.caller():  # a caller that never asks within the test
                await asyncio.sleep(5)

        hold = asyncio.ensure_future(stuck())
        try:
            return [await asyncio.wait_for(asks(), timeout=3)]
        finally:
            hold.cancel()
            await batcher.aclose()
            await client.aclose()

    assert asyncio.run(go()) == ["ok: x"]
    assert srv.created == 1


def test_retryable_failures_go_to_the_next_job_then_to_single_calls(server: Any) -> None:
    # task 1 fails in its first job only; task 2 in every job: asked as a single call
    srv = server(fail=lambda cid, attempt: (cid.startswith("c0000001") and attempt == 1) or cid.startswith("c0000002"))
    batcher = Batcher(Journal((log := []).append))
    client = _client(srv, batcher, batch_max_jobs=2)
    out = _ask(client, batcher, ["t0", "t1", "t2"])
    assert [c.text for c in out] == ["ok: t0", "ok: t1", "ok: t2"]
    assert srv.created == 2 and srv.single_calls == 1
    assert srv.singles[0]["messages"][-1]["content"] == "t2"
    assert (
        out[1].record.attempts == 2 and out[1].record.cost_usd < out[2].record.cost_usd
    )  # the single call is full price
    done = [e for e in log if e["type"] == "batch_done"]
    assert done[0]["ids"] == ["batch-1", "batch-2"] and (done[0]["retried"], done[0]["single"]) == (2, 1)


def test_a_line_failed_for_good_fails_the_call_with_the_batch_id(server: Any) -> None:
    srv = server(fail=lambda cid, attempt: cid.startswith("c0000001"), fail_status=400)
    batcher = Batcher()
    out = _ask(_client(srv, batcher), batcher, ["t0", "t1"])
    assert out[0].text == "ok: t0"
    err = out[1]
    assert isinstance(err, LLMError) and err.record.outcome == "http_400" and "batch-1" in str(err)
    assert "scripted failure" in str(err) and srv.single_calls == 0 and srv.created == 1


def test_a_logged_job_is_polled_again_not_paid_again(server: Any) -> None:
    srv = server(delay_s=0.3)
    prompts = [f"task {i}" for i in range(5)]
    log: list[dict[str, Any]] = []

    async def crash() -> None:  # the first run dies while its job runs
        batcher = Batcher(Journal(log.append))
        client = _client(srv, batcher)

        async def one(i: int) -> None:
            with call_site(3, f"c{i:07d}"), batcher.caller():
                await client.chat([{"role": "user", "content": prompts[i]}], tag="judge")

        tasks = [asyncio.ensure_future(one(i)) for i in range(5)]
        while not log:
            await asyncio.sleep(0.01)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await batcher.aclose()
        await client.aclose()

    asyncio.run(crash())
    assert srv.created == 1 and srv.batches["batch-1"]["status"] != "completed"
    again = Batcher(Journal((after := []).append, log))
    out = _ask(_client(srv, again), again, prompts)
    assert [c.text for c in out] == [f"ok: {p}" for p in prompts]
    assert srv.created == 1 and srv.single_calls == 0, "the logged job was paid for again"
    assert set(srv.attempts.values()) == {1} and again.stats["resumed"] == 5 and after == []


def test_a_new_generation_forgets_the_jobs_before_it() -> None:
    events = [
        {"type": "batch", "id": "b1", "custom_ids": ["a", "b"]},
        {"type": "generation", "index": 0},
        {"type": "batch", "id": "b2", "custom_ids": ["c"]},
    ]
    assert Journal(lambda ev: None, events).known == {"c": "b2"}


def test_custom_ids_follow_the_call_site_and_count_repeats() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    with call_site(3, "c0000007"):
        a, b = custom_id(body, "respond", 0), custom_id(body, "respond", 0)
        c = custom_id(body, "respond", 1)
    with call_site(3, "c0000007"):
        again = custom_id(body, "respond", 0)
    assert a.startswith("c0000007-respond-") and a.endswith("-0") and b.endswith("-1")
    assert a != b and c.split("-")[2] != a.split("-")[2] and again == a
    assert len(a) <= 64


@settings(max_examples=60, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3),
                    max_leaves=12))  # fmt: skip
def test_as_completion_never_raises_on_any_body(body: Any) -> None:
    """A batch line's body is the provider's JSON: whatever its shape, reading it gives
    the attributes the client reads (or their absence), never an exception."""
    obj = {"choices": body, "usage": body} if not isinstance(body, dict) else body
    out = as_completion(obj)
    for ch in out.choices:
        getattr(getattr(ch, "message", None), "content", None)
    assert out.usage is None or isinstance(out.usage, object)


def test_as_completion_reads_a_chat_completion() -> None:
    body = json.loads(
        '{"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],'
        ' "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}'
    )
    out = as_completion(body)
    assert out.choices[0].message.content == "hi" and out.choices[0].finish_reason == "stop"
    assert out.usage.prompt_tokens == 3


def test_the_request_cache_answers_before_a_job_is_made(
    server: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply a batch job paid for is stored in the request cache; the same request
    again is answered from it, without a job (and its saved cost is the batch price)."""
    monkeypatch.delenv("QDSEARCH_NO_CACHE", raising=False)
    cache = RequestCache(tmp_path / "cache")
    srv = server()
    try:
        first = Batcher()
        client = LLMClient(endpoint(srv.base_url, batch=True, batch_poll_s=0.01, **PRICE), cache=cache)
        client.batcher = first
        paid = _ask(client, first, ["same question", "other question"])
        assert srv.created == 1 and all(c.record.cache == "miss" for c in paid)
        again = Batcher()
        client = LLMClient(endpoint(srv.base_url, batch=True, batch_poll_s=0.01, **PRICE), cache=cache)
        client.batcher = again
        hit = _ask(client, again, ["same question"])
        assert srv.created == 1 and again.stats["jobs"] == 0, "a cached request went into a job"
        assert hit[0].text == paid[0].text and hit[0].record.cache == "hit"
        assert hit[0].record.saved_cost_usd == pytest.approx(paid[0].record.cost_usd)
    finally:
        cache.close()
