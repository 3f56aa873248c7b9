"""The chat request without the SDK's transform (qdsearch.llm.fastpath): the same bytes
on the wire and the same parsed reply as ``chat.completions.create``, and the SDK path
for anything that is not plain JSON data."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai._utils import async_maybe_transform
from openai.types.chat import completion_create_params

from qdsearch.judge import VERDICT_SCHEMA
from qdsearch.llm.client import response_format
from qdsearch.llm.fastpath import create_chat, plain
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
    assert type(fast) is type(via_sdk)
    strip = lambda r: {k: v for k, v in r.model_dump().items() if k not in ("id", "created")}  # noqa: E731
    assert strip(fast) == strip(via_sdk)
    assert fast.usage.prompt_tokens == 11 and fast.choices[0].message.content == '{"quality": 5}'


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
