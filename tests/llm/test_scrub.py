"""No key in anything that leaves LLMClient (issue 14, item 1): an endpoint or proxy
that echoes the request's Authorization header in its error body (400, 429, 500) or
in a broken, non-HTTP answer (a connection error) must not put the key into an
exception message."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.config import EndpointConfig
from qdsearch.llm import LLMClient, LLMError
from qdsearch.llm.client import REDACTED, scrub
from tests.fakes.openai_server import FakeOpenAI, Faults

Make = Callable[..., FakeOpenAI]
KEY = "sk-canary-" + "7a1f" * 8
VAR = "QDS_SCRUB_TEST_KEY"
MSG = [{"role": "user", "content": "hello"}]


def _fail(client: LLMClient, what: str = "chat") -> LLMError:
    async def go() -> LLMError:
        try:
            if what == "chat":
                await client.chat(MSG, tag="t")
            else:
                await client.embed(["some text"])
        except LLMError as e:
            return e
        finally:
            await client.aclose()
        raise AssertionError("the call did not fail")

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("fault", "outcome", "attempts"),
    [
        ({"p_400": 1.0}, "http_400", 1),
        ({"p_429": 1.0, "retry_after": "0.001"}, "http_429", 2),
        ({"p_500": 1.0}, "http_500", 2),
        ({"p_broken": 1.0}, "connection", 2),
    ],
)
def test_echoed_authorization_header_never_leaves_the_client(
    fake_openai: Make, monkeypatch: pytest.MonkeyPatch, fault: dict[str, Any], outcome: str, attempts: int
) -> None:
    monkeypatch.setenv(VAR, KEY)
    fake = fake_openai(faults=Faults(**fault))
    fake.echo_auth = True
    client = LLMClient(
        EndpointConfig(base_url=fake.base_url, model="m", api_key_env=VAR, max_retries=1, backoff_s=0.001)
    )
    e = _fail(client)
    assert (e.record.outcome, e.record.attempts) == (outcome, attempts)
    assert fake.auth_headers == [f"Bearer {KEY}"] * attempts  # the endpoint did see (and echo) the key
    text = str(e) + repr(e) + repr(e.args) + repr(e.record)
    assert KEY not in text and KEY[3:] not in text, text
    assert REDACTED in str(e)  # the echoed header was there, and was cleaned
    assert e.__cause__ is None and e.__context__ is None  # no uncleaned exception chained to it
    assert "\n" not in str(e)


def test_echo_in_an_embeddings_error_is_scrubbed(fake_openai: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAR, KEY)
    fake = fake_openai()
    fake.echo_auth = True
    fake.embed_status = 503
    client = LLMClient(
        EndpointConfig(base_url=fake.base_url, model="m", api_key_env=VAR, max_retries=1, backoff_s=0.001)
    )
    e = _fail(client, "embed")
    assert e.record.outcome == "http_503" and e.record.attempts == 2
    assert KEY not in str(e) and REDACTED in str(e)


def test_a_short_unusual_key_is_scrubbed_by_value(fake_openai: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "zq81"  # looks like nothing: only its value gives it away
    monkeypatch.setenv(VAR, key)
    fake = fake_openai(lambda req: f"unused {req}")
    fake.echo_auth = True
    fake.faults = Faults(p_400=1.0)
    client = LLMClient(EndpointConfig(base_url=fake.base_url, model="m", api_key_env=VAR, max_retries=0))
    e = _fail(client)
    assert key not in str(e)


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=8, max_size=60)
_noise = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40)
_framing = st.sampled_from(
    [
        "Bearer {}",
        "bearer {}",
        "Authorization: Bearer {}",
        '{{"authorization": "Bearer {}"}}',
        "api_key={}",
        "'x-api-key': '{}'",
        "{}",
        "sk-{}",
        "Bearer%20{}",
    ]
)


@settings(max_examples=300, deadline=None)
@given(key=_token, before=_noise, after=_noise, framing=_framing)
def test_scrub_removes_the_key_in_any_framing(key: str, before: str, after: str, framing: str) -> None:
    text = before + framing.format(key) + after
    out = scrub(text, (key,))
    assert key not in out
    assert scrub(out, (key,)) == out  # idempotent


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=200))
def test_scrub_without_credentials_changes_nothing(text: str) -> None:
    # Ordinary prose (no bearer/api-key framing, no sk- token) passes unchanged.
    if any(
        w in text.lower() for w in ("bearer", "basic", "sk-", "key", "authorization", "token", "secret", "password")
    ):
        return
    assert scrub(text, ()) == text


def test_scrub_keeps_ordinary_words() -> None:
    for text in ("the token limit is 512", "basic English only", "max_tokens must be >= 1", "Connection error."):
        assert scrub(text, ("abc",)) == text
