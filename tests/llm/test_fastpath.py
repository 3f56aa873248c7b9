"""The chat request without the SDK's transform and response model (qdsearch.llm.fastpath):
the same bytes on the wire and the same reply as ``chat.completions.create`` read into a
``ChatReply``, the SDK path for anything that is not plain JSON data, and a lenient reader
that never raises on an odd body."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai._utils import async_maybe_transform
from openai.types.chat import ChatCompletion, completion_create_params

from qdsearch.judge import VERDICT_SCHEMA
from qdsearch.llm.client import response_format
from qdsearch.llm.fastpath import ChatReply, create_chat, plain, read_reply
from qdsearch.operators import CHILD_SCHEMA
from tests.fakes.openai_server import Reply

KEY = "sk-fastpath-test-0123456789"


def _bodies() -> list[dict[str, Any]]:
    msgs = [{"role": "system", "content": "You grade."}, {"role": "user", "content": 'Grade this: é ✓ \n"quoted"'}]
    out: list[dict[str, Any]] = [{"model": "m", "messages": msgs, "temperature": 0.8, "max_tokens": 64}]
    for mode in ("json_schema", "json_object"):
        for schema in (CHILD_SCHEMA, VERDICT_SCHEMA["both"]):
            rf = response_format(mode, schema)
            out.append({"model": "m", "messages": msgs, "temperature": 0.0, "max_tokens": 32, "seed": 7,
                        "response_format": rf})  # fmt: skip
    return out


async def _both(base_url: str, body: dict[str, Any]) -> tuple[Any, Any]:
    client = openai.AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=10)
    try:
        via_sdk = await client.chat.completions.create(**body)
        fast = await create_chat(client, body)
    finally:
        await client.close()
    return via_sdk, fast


@pytest.mark.parametrize("body", _bodies())
def test_same_request_and_reply_as_the_sdk(fake_openai: Any, body: dict[str, Any]) -> None:
    srv = fake_openai(lambda req: Reply('{"quality": 5}', prompt_tokens=11, completion_tokens=3))
    via_sdk, fast = asyncio.run(_both(srv.base_url, body))
    assert srv.requests[0] == srv.requests[1] == json.loads(json.dumps(body))
    assert srv.auth_headers[0] == srv.auth_headers[1] == f"Bearer {KEY}"
    assert isinstance(via_sdk, ChatCompletion) and type(fast) is ChatReply
    assert fast == read_reply(via_sdk)
    assert fast == ChatReply('{"quality": 5}', "stop", 11, 3, 14, True)


def _raw(text: str) -> Reply:
    return Reply(raw_body=text)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("{}", ChatReply("", None, 0, 0, None, False)),
        ('{"choices": []}', ChatReply("", None, 0, 0, None, False)),
        ('{"choices": [{"message": {"content": null}, "finish_reason": "length"}]}', ChatReply("", "length", 0, 0, None, True)),
        ('{"choices": [{"message": {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}}]}',
         ChatReply("ab", None, 0, 0, None, True)),
        ('{"choices": [{"message": {"content": 5}, "finish_reason": 7}], "usage": {"prompt_tokens": "x"}}',
         ChatReply("", None, 0, 0, None, True)),
        ('{"choices": "none", "usage": [1]}', ChatReply("", None, 0, 0, None, False)),
        ("[1, 2]", ChatReply("", None, 0, 0, None, False)),
        ('"text"', ChatReply("", None, 0, 0, None, False)),
    ],
)  # fmt: skip
def test_an_odd_body_reads_as_what_it_holds_and_never_raises(fake_openai: Any, body: str, expected: ChatReply) -> None:
    srv = fake_openai(lambda req: _raw(body))

    async def go() -> ChatReply:
        client = openai.AsyncOpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0, timeout=10)
        try:
            return await create_chat(client, _bodies()[0])
        finally:
            await client.close()

    assert asyncio.run(go()) == expected


def test_a_body_that_is_not_json_is_the_sdks_error(fake_openai: Any) -> None:
    srv = fake_openai(lambda req: _raw('{"choices": [{"mess'))

    async def go() -> None:
        client = openai.AsyncOpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0, timeout=10)
        try:
            with pytest.raises(ValueError):  # the client retries it as a malformed body
                await create_chat(client, _bodies()[0])
        finally:
            await client.close()

    asyncio.run(go())


_field = st.none() | st.booleans() | st.integers(-3, 10**6) | st.text(max_size=6) | st.lists(st.integers(), max_size=2)
_message = st.fixed_dictionaries(
    {}, optional={"role": st.just("assistant") | _field, "content": st.text(max_size=20) | _field}
)
_choice = st.fixed_dictionaries(
    {},
    optional={
        "index": st.integers(0, 3),
        "message": _message | _field,
        "finish_reason": st.sampled_from(["stop", "length"]) | _field,
    },
)
_usage = st.fixed_dictionaries(
    {}, optional={k: st.integers(0, 10**6) | _field for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
)
_completion = st.fixed_dictionaries(
    {}, optional={"id": st.just("c1"), "object": st.just("chat.completion"), "created": st.just(0), "model": st.just("m"),
                  "choices": st.lists(_choice | _field, max_size=2) | _field, "usage": _usage | _field},
)  # fmt: skip


_valid_choice = st.fixed_dictionaries(
    {"index": st.integers(0, 3), "finish_reason": st.sampled_from(["stop", "length", "content_filter"]),
     "message": st.fixed_dictionaries({"role": st.just("assistant"), "content": st.none() | st.text(max_size=20)})},
)  # fmt: skip
_valid = st.fixed_dictionaries(
    {"id": st.just("c1"), "object": st.just("chat.completion"), "created": st.just(0), "model": st.just("m"),
     "choices": st.lists(_valid_choice, max_size=2)},
    optional={"usage": st.fixed_dictionaries({k: st.integers(0, 10**6) for k in ("prompt_tokens", "completion_tokens",
                                                                                  "total_tokens")})},
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(body=_completion | _valid)
def test_the_body_and_the_sdk_model_read_alike(body: dict[str, Any]) -> None:
    """Any body reads without raising; one the SDK's model accepts as valid reads the
    same from the dict as from that model (the SDK path, batch results)."""
    got = read_reply(body)
    assert isinstance(got.text, str) and isinstance(got.prompt_tokens, int)
    assert read_reply(json.dumps(body)) == got
    try:
        model = ChatCompletion.model_validate(body)
    except Exception:
        return
    assert read_reply(model) == got
    assert read_reply(ChatCompletion.construct(**body)) == got  # the SDK's lenient build of it


def test_errors_are_the_sdks(fake_openai: Any) -> None:
    srv = fake_openai()
    srv.script([Reply(status=429, headers={"Retry-After": "1"}), Reply(status=400)])
    body = _bodies()[0]

    async def go() -> list[type[BaseException]]:
        client = openai.AsyncOpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0, timeout=10)
        seen = []
        try:
            for _ in range(2):
                with pytest.raises(openai.APIStatusError) as e:
                    await create_chat(client, body)
                seen.append(type(e.value))
        finally:
            await client.close()
        return seen

    assert asyncio.run(go()) == [openai.RateLimitError, openai.BadRequestError]


@pytest.mark.parametrize("body", _bodies())
def test_the_sdk_transform_is_the_identity_on_these_bodies(body: dict[str, Any]) -> None:
    """Why the short path is safe: what the SDK would send is the body itself."""
    out = asyncio.run(async_maybe_transform(body, completion_create_params.CompletionCreateParamsNonStreaming))
    assert out == body


class _Odd:
    pass


def test_not_plain_takes_the_sdk_path() -> None:
    assert plain(_bodies()[1])
    assert not plain({"messages": [{"role": "user", "content": _Odd()}]})
    assert not plain({1: "a"})
    deep: Any = "x"
    for _ in range(80):
        deep = [deep]
    assert not plain({"messages": deep})


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3),
    max_leaves=12,
)


@settings(max_examples=80, deadline=None)
@given(value=_json)
def test_plain_accepts_every_json_value(value: Any) -> None:
    assert plain(value)
    assert plain(json.loads(json.dumps(value)))


@settings(max_examples=100, deadline=None)
@given(body=_valid)
def test_a_valid_body_reads_its_fields(body: dict[str, Any]) -> None:
    got = read_reply(ChatCompletion.model_validate(body))
    first = body["choices"][0] if body["choices"] else None
    assert got.answered == (first is not None)
    assert got.text == ((first["message"]["content"] or "") if first else "")
    assert got.finish_reason == (first["finish_reason"] if first else None)
    assert got.total_tokens == body.get("usage", {}).get("total_tokens")
